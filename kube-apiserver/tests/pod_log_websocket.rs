//! `pods/log` over a WebSocket upgrade, as client libraries (the Python and JavaScript clients, dashboards) read
//! logs: `binary.k8s.io`, `base64.binary.k8s.io` and no subprotocol, against a fake kubelet on loopback that serves
//! `/containerLogs/...`; the plain GET still streams text/plain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube_apiserver::testing::{TestApiserver, eventually, within};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// The log the fake kubelet serves without `follow`: 5000 bytes, more than two of upstream's 2 KiB messages.
fn log_text() -> Bytes {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < 5000 {
        s.push_str(&format!("line {i:05} of the container's log\n"));
        i += 1;
    }
    s.truncate(5000);
    Bytes::from(s)
}

/// A kubelet API on 127.0.0.1 (TLS, any certificate: the apiserver does not verify kubelets here) serving
/// `/containerLogs/default/p/c`: the whole log, or with `follow=true` a line every 50 ms until the reader goes away,
/// which sets `gone`.
async fn fake_kubelet(dir: &std::path::Path, gone: Arc<AtomicBool>) -> u16 {
    let ca = kube_apiserver::pki::Ca::new("kubelet-ca").unwrap();
    let pair = ca.issue("kubelet", &[], &["127.0.0.1"]).unwrap();
    pair.write(&dir.join("kubelet.crt"), &dir.join("kubelet.key")).unwrap();
    let tls = kube_apiserver::pki::server_config(&dir.join("kubelet.crt"), &dir.join("kubelet.key"), None).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, gone) = (acceptor.clone(), gone.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let gone = gone.clone();
                    async move { Ok::<_, std::convert::Infallible>(containers_logs(req, gone)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

fn containers_logs(req: hyper::Request<hyper::body::Incoming>, gone: Arc<AtomicBool>) -> hyper::Response<Body> {
    if req.uri().path() != "/containerLogs/default/p/c" {
        let mut r = hyper::Response::new(Full::new(Bytes::from("not found")).boxed_unsync());
        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
        return r;
    }
    if !req.uri().query().unwrap_or_default().contains("follow=true") {
        return hyper::Response::new(Full::new(log_text()).boxed_unsync());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        for i in 0.. {
            if tx.send(Bytes::from(format!("tick {i}\n"))).await.is_err() {
                gone.store(true, Ordering::SeqCst);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    hyper::Response::new(StreamBody::new(frames).boxed_unsync())
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A WebSocket to the apiserver (TLS with the admin client certificate) offering `protocols`, as a client library
/// opens one; the socket and the subprotocol the server chose.
async fn websocket(
    api: &TestApiserver,
    path: &str,
    protocols: Option<&str>,
) -> Result<(Ws, Option<String>), tungstenite::Error> {
    let c = &api.config;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut c.ca_pem.as_deref().unwrap()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut c.client_cert_pem.as_deref().unwrap()).collect::<Result<_, _>>().unwrap();
    let key = rustls_pemfile::private_key(&mut c.client_key_pem.as_deref().unwrap()).unwrap().unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    let host = c.server.trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp).await.unwrap();
    let mut request = format!("wss://{host}{path}").into_client_request().unwrap();
    if let Some(p) = protocols {
        request.headers_mut().insert("sec-websocket-protocol", p.parse().unwrap());
    }
    let (ws, response) = tokio_tungstenite::client_async(request, stream).await?;
    let chosen = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_string());
    Ok((ws, chosen))
}

/// Every message until the server's Close, and the Close's code.
async fn read_all(mut ws: Ws) -> (Vec<Message>, Option<CloseCode>) {
    let mut messages = Vec::new();
    let close = within(20, "the log over the WebSocket", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(m)) => messages.push(m),
                other => panic!("the socket ended without a Close: {other:?}"),
            }
        }
    })
    .await;
    (messages, close)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_log_over_websocket_as_upstream() {
    let api = TestApiserver::start().await;
    let gone = Arc::new(AtomicBool::new(false));
    let port = fake_kubelet(api.dir.path(), gone.clone()).await;
    let nodes = api.client.api("", "v1", "nodes").unwrap();
    nodes
        .create(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "fake"},
                        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                   "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}))
        .await
        .unwrap();
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("default");
    pods.create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                        "spec": {"nodeName": "fake", "containers": [{"name": "c", "image": "busybox"}]}}))
        .await
        .unwrap();
    let path = "/api/v1/namespaces/default/pods/p/log";
    let log = log_text();

    // The plain GET streams text/plain.
    let resp = api.client.get_stream(path).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), log);

    // binary.k8s.io, and no subprotocol at all: binary messages, an empty one first, at most 2 KiB each, then a
    // normal Close when the log ends.
    for (offered, echoed) in [(Some("binary.k8s.io"), Some("binary.k8s.io")), (None, None)] {
        let (ws, chosen) = websocket(&api, path, offered).await.unwrap();
        assert_eq!(chosen.as_deref(), echoed);
        let (messages, close) = read_all(ws).await;
        assert_eq!(close, Some(CloseCode::Normal));
        assert_eq!(messages[0], Message::Binary(Bytes::new()), "{offered:?}: the empty first message");
        let mut got = Vec::new();
        for m in &messages[1..] {
            let Message::Binary(b) = m else { panic!("{offered:?}: not a binary message: {m:?}") };
            assert!(!b.is_empty() && b.len() <= 2048, "{offered:?}: a message of {} bytes", b.len());
            got.extend_from_slice(b);
        }
        assert!(messages.len() >= 4, "{offered:?}: 5000 bytes take three messages at least");
        assert_eq!(got, log, "{offered:?}");
    }

    // base64.binary.k8s.io: text messages, each the base64 of its bytes; the client's order decides.
    for offered in
        ["base64.binary.k8s.io", "base64.binary.k8s.io, binary.k8s.io", "v5.channel.k8s.io, base64.binary.k8s.io"]
    {
        let (ws, chosen) = websocket(&api, path, Some(offered)).await.unwrap();
        assert_eq!(chosen.as_deref(), Some("base64.binary.k8s.io"), "{offered}");
        let (messages, close) = read_all(ws).await;
        assert_eq!(close, Some(CloseCode::Normal));
        assert_eq!(messages[0], Message::Text("".into()), "{offered}: the empty first message");
        let mut got = Vec::new();
        for m in &messages[1..] {
            let Message::Text(t) = m else { panic!("{offered}: not a text message: {m:?}") };
            let bytes = base64::engine::general_purpose::STANDARD.decode(t.as_str()).unwrap();
            assert!(!bytes.is_empty() && bytes.len() <= 2048);
            got.extend_from_slice(&bytes);
        }
        assert_eq!(got, log, "{offered}");
    }
    let (ws, chosen) = websocket(&api, path, Some("binary.k8s.io, base64.binary.k8s.io")).await.unwrap();
    assert_eq!(chosen.as_deref(), Some("binary.k8s.io"));
    drop(ws);

    // A subprotocol the log does not speak: 403, as golang.org/x/net/websocket refuses a failed handshake.
    match websocket(&api, path, Some("v5.channel.k8s.io")).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected a 403, got {:?}", other.map(|(_, p)| p)),
    }
    // Errors before the upgrade are Status answers as for a plain GET (no such container).
    match websocket(&api, &format!("{path}?container=nope"), Some("binary.k8s.io")).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("expected a 400, got {:?}", other.map(|(_, p)| p)),
    }

    // follow=true: lines as they come; when the client leaves, the kubelet's stream is dropped.
    let (mut ws, _) = websocket(&api, &format!("{path}?follow=true"), Some("binary.k8s.io")).await.unwrap();
    let mut text = String::new();
    within(10, "followed lines", async {
        while !text.contains("tick 2\n") {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => text.push_str(std::str::from_utf8(&b).unwrap()),
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(text.starts_with("tick 0\n"), "{text}");
    assert!(!gone.load(Ordering::SeqCst));
    ws.close(None).await.unwrap();
    drop(ws);
    eventually(10, "the kubelet's log stream to be dropped", || gone.load(Ordering::SeqCst)).await;
    api.stop().await;
}
