//! Client certificates that change while a client runs (client-go's certificate-rotating transport): every TLS
//! handshake takes the current certificate, and replacing it closes the connections made so far (upstream's
//! connrotation dialer `CloseAll`), so the next requests authenticate with the new one rather than with a
//! certificate that may expire under a long-lived HTTP/2 connection.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::sign::CertifiedKey;

use crate::{Error, Result};

/// The certificate and key a client presents, replaceable at run time.
pub struct RotatingCert {
    current: RwLock<Arc<CertifiedKey>>,
    pub(crate) tracker: Arc<Tracker>,
}

impl std::fmt::Debug for RotatingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingCert").finish_non_exhaustive()
    }
}

fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>> {
    let certs = crate::pem_certs(cert_pem)?;
    if certs.is_empty() {
        return Err(Error::Tls("no certificate in the client certificate data".into()));
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| Error::Tls(e.to_string()))?
        .ok_or_else(|| Error::Tls("no private key in the client key data".into()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(certs, key, &provider).map(Arc::new).map_err(|e| Error::Tls(e.to_string()))
}

impl RotatingCert {
    /// Starts with a PEM certificate (chain) and its PEM private key.
    pub fn new(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<Self>> {
        Ok(Arc::new(RotatingCert { current: RwLock::new(certified_key(cert_pem, key_pem)?), tracker: Arc::default() }))
    }

    /// Presents a new certificate from now on and closes every connection made with the old one.
    pub fn set(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<()> {
        let key = certified_key(cert_pem, key_pem)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
        self.tracker.close_all();
        Ok(())
    }

    /// How many times the connections were closed (each [`RotatingCert::set`] once).
    pub fn rotations(&self) -> u64 {
        self.tracker.generation.load(Ordering::SeqCst)
    }
}

impl rustls::client::ResolvesClientCert for RotatingCert {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The connections of one client: a generation that closing bumps, and the wakers of connections waiting for
/// I/O (woken on close so that they notice).
#[derive(Default)]
pub(crate) struct Tracker {
    generation: AtomicU64,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, Waker>>,
}

impl Tracker {
    fn close_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let wakers: Vec<Waker> =
            self.waiting.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, w)| w).collect();
        for w in wakers {
            w.wake();
        }
    }
}

/// Dials TCP as [`HttpConnector`] does; with a tracker, each connection ends when the tracker closes all.
#[derive(Clone)]
pub(crate) struct TrackingConnector {
    pub(crate) http: HttpConnector,
    pub(crate) tracker: Option<Arc<Tracker>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Uri> for TrackingConnector {
    type Response = Tracked<TokioIo<tokio::net::TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        tower::Service::<http::Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let dial = tower::Service::call(&mut self.http, uri);
        let tracker = self.tracker.clone();
        Box::pin(async move {
            let io = dial.await?;
            Ok(match tracker {
                Some(t) => Tracked {
                    inner: io,
                    watch: Some(Watch {
                        id: t.next_id.fetch_add(1, Ordering::Relaxed),
                        generation: t.generation.load(Ordering::SeqCst),
                        tracker: t,
                    }),
                },
                None => Tracked { inner: io, watch: None },
            })
        })
    }
}

struct Watch {
    id: u64,
    generation: u64,
    tracker: Arc<Tracker>,
}

/// A connection that fails its I/O once its tracker closed all connections.
pub(crate) struct Tracked<T> {
    inner: T,
    watch: Option<Watch>,
}

impl<T> Tracked<T> {
    /// Registers the waker first, then checks the generation: a close between the two still wakes this task.
    fn closed(&self, cx: &Context<'_>) -> bool {
        let Some(w) = &self.watch else { return false };
        w.tracker.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(w.id, cx.waker().clone());
        w.tracker.generation.load(Ordering::SeqCst) != w.generation
    }
}

fn rotated() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "client certificate rotated")
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        if let Some(w) = &self.watch {
            w.tracker.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&w.id);
        }
    }
}

impl<T: Read + Unpin> Read for Tracked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<std::io::Result<()>> {
        if self.closed(cx) {
            return Poll::Ready(Err(rotated()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Tracked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.closed(cx) {
            return Poll::Ready(Err(rotated()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.closed(cx) {
            return Poll::Ready(Err(rotated()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for Tracked<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    /// A TLS server that requires a client certificate (signed by `ca`) and answers with its common name.
    async fn echo_cn_server(ca: &rcgen::Issuer<'static, rcgen::KeyPair>, ca_pem: &str) -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, ca).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(crate::pem_certs(ca_pem.as_bytes()).unwrap().remove(0)).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
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
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let der = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
                    let cn = String::from_utf8_lossy(&der).to_string();
                    let svc = hyper::service::service_fn(move |_req| {
                        let cn = cn.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(bytes::Bytes::from(cn))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (format!("https://{addr}"), ca_pem.as_bytes().to_vec())
    }

    fn client_pair(ca: &rcgen::Issuer<'static, rcgen::KeyPair>, cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        (params.signed_by(&key, ca).unwrap().pem(), key.serialize_pem())
    }

    /// The client presents the replaced certificate on its next request: the connection made with the old one
    /// (an HTTP/2 connection the pool would otherwise reuse) is closed by the rotation.
    #[tokio::test]
    async fn replacing_the_certificate_closes_connections_and_presents_the_new_one() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let ca = rcgen::Issuer::new(ca_params, ca_key);
        let (server, ca_bytes) = echo_cn_server(&ca, &ca_pem).await;
        let (cert_a, key_a) = client_pair(&ca, "node-a");
        let rotating = RotatingCert::new(cert_a.as_bytes(), key_a.as_bytes()).unwrap();
        let cfg = crate::Config {
            server,
            ca_pem: Some(ca_bytes),
            rotating_cert: Some(rotating.clone()),
            ..Default::default()
        };
        let client = crate::Client::new(&cfg).unwrap();
        let first = client.get_raw("/").await.unwrap();
        assert!(String::from_utf8_lossy(&first).contains("node-a"));
        let again = client.get_raw("/").await.unwrap();
        assert!(String::from_utf8_lossy(&again).contains("node-a"), "the same connection, the same certificate");
        let (cert_b, key_b) = client_pair(&ca, "node-b");
        rotating.set(cert_b.as_bytes(), key_b.as_bytes()).unwrap();
        assert_eq!(rotating.rotations(), 1);
        // The request racing the close may fail once; the next one dials anew with the new certificate.
        let mut seen = String::new();
        for _ in 0..3 {
            if let Ok(b) = client.get_raw("/").await {
                seen = String::from_utf8_lossy(&b).into_owned();
                break;
            }
        }
        assert!(seen.contains("node-b"), "the new certificate is presented: {seen:?}");
        assert!(RotatingCert::new(b"junk", key_b.as_bytes()).is_err());
    }
}
