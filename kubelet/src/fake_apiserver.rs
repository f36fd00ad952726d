//! A small fake apiserver for unit tests: HTTPS on loopback with a throwaway CA, every request recorded and
//! answered by the test's handler (TokenRequest, TokenReview, SubjectAccessReview, CertificateSigningRequests).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub authorization: Option<String>,
    /// The JSON body (Null when there was none).
    pub body: Value,
    /// The common name of the client certificate, if one was presented.
    pub client_cn: Option<String>,
}

/// The handler's answer: status code and body text.
pub type Reply = (u16, String);

/// A JSON answer.
pub fn json(code: u16, v: Value) -> Reply {
    (code, v.to_string())
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// The fake's certificate authority: it signs the fake's serving certificate, client certificates and CSRs.
#[derive(Clone)]
pub struct Ca {
    issuer: Arc<rcgen::Issuer<'static, rcgen::KeyPair>>,
    pub pem: String,
}

impl Ca {
    pub fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "fake-ca");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = ca_params.self_signed(&ca_key).unwrap().pem();
        Ca { issuer: Arc::new(rcgen::Issuer::new(ca_params, ca_key)), pem }
    }

    /// A client certificate and key (PEM): `CN=cn`, `O=orgs`, valid for `valid`.
    pub fn client_cert(&self, cn: &str, orgs: &[&str], valid: std::time::Duration) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, *o);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(1)).into();
        params.not_after = (now + valid).into();
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }

    /// Signs a PEM certificate request for `valid` (what a signer controller does).
    pub fn sign_csr(&self, csr_pem: &str, valid: std::time::Duration) -> String {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
        let now = std::time::SystemTime::now();
        csr.params.not_before = (now - std::time::Duration::from_secs(1)).into();
        csr.params.not_after = (now + valid).into();
        csr.signed_by(&self.issuer).unwrap().pem()
    }
}

/// The running fake.
pub struct FakeApiserver {
    pub config: client::Config,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub ca: Ca,
}

impl FakeApiserver {
    /// Starts serving on 127.0.0.1 (any port) with a new CA.
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(Ca::new(), handler).await
    }

    /// Starts serving with `ca`; client certificates it signed are accepted (and their CN recorded).
    pub async fn start_with(ca: Ca, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let ca_pem = ca.pem.clone();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca.issuer).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let (seen2, handler2) = (seen.clone(), handler.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen, handler) = (acceptor.clone(), seen2.clone(), handler2.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let client_cn = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| crate::auth::subject_of(c).map(|(cn, _)| cn));
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, handler, client_cn) = (seen.clone(), handler.clone(), client_cn.clone());
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
                            let authorization = req
                                .headers()
                                .get(http::header::AUTHORIZATION)
                                .and_then(|v| v.to_str().ok())
                                .map(String::from);
                            let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            let s = Seen { method, path, authorization, body, client_cn };
                            let (code, text) = handler(&s);
                            seen.lock().unwrap().push(s);
                            let mut r = hyper::Response::new(Full::new(Bytes::from(text)));
                            *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
                            r.headers_mut()
                                .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let config = client::Config {
            server: format!("https://{addr}"),
            ca_pem: Some(ca_pem.clone().into_bytes()),
            namespace: "default".into(),
            ..Default::default()
        };
        FakeApiserver { config, seen, ca }
    }

    /// A client of the fake (no credentials unless the config is changed).
    pub fn client(&self) -> client::Client {
        client::Client::new(&self.config).unwrap()
    }

    /// The requests so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn seen_at(&self, prefix: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path.starts_with(prefix)).collect()
    }

    /// A client certificate from the fake's CA (see [`Ca::client_cert`]).
    pub fn client_cert(&self, cn: &str, orgs: &[&str], valid: std::time::Duration) -> (String, String) {
        self.ca.client_cert(cn, orgs, valid)
    }
}
