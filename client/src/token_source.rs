//! Bearer tokens that change while a [`crate::Client`] is in use, as client-go's `oauth2.TokenSource` behind
//! `ResettableTokenSourceWrapTransport`: the client asks the source for the token of every request, and tells it
//! when the server refused one (401) so that the next request carries a fresh token.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// Where a client's bearer token comes from (e.g. a service account's bound token renewed before it expires).
pub trait TokenSource: Send + Sync {
    /// The token for a request about to be sent (fetching a new one when the cached one is due).
    fn token(&self) -> Pin<Box<dyn Future<Output = crate::Result<String>> + Send + '_>>;

    /// The server answered 401 to a request sent at `sent_at`: forget the current token if it was obtained before
    /// then (a token obtained meanwhile is kept, so that concurrent failures fetch one new token, not many).
    fn reset_older_than(&self, sent_at: Instant);
}

#[cfg(test)]
mod tests {
    //! A TLS server that accepts one token at a time, and a client whose token source is replaced under it.

    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    use super::*;
    use crate::{Client, Config};

    /// Hands out `tok-<n>`; `reset_older_than` moves to the next n.
    #[derive(Default)]
    struct Counter {
        state: Mutex<(u32, Option<Instant>)>,
        resets: Mutex<u32>,
    }

    impl TokenSource for Counter {
        fn token(&self) -> Pin<Box<dyn Future<Output = crate::Result<String>> + Send + '_>> {
            Box::pin(async move {
                let mut s = self.state.lock().unwrap();
                if s.1.is_none() {
                    *s = (s.0 + 1, Some(Instant::now()));
                }
                Ok(format!("tok-{}", s.0))
            })
        }

        fn reset_older_than(&self, sent_at: Instant) {
            *self.resets.lock().unwrap() += 1;
            let mut s = self.state.lock().unwrap();
            if s.1.is_some_and(|t| t < sent_at) {
                s.1 = None;
            }
        }
    }

    struct Failing;

    impl TokenSource for Failing {
        fn token(&self) -> Pin<Box<dyn Future<Output = crate::Result<String>> + Send + '_>> {
            Box::pin(async { Err(crate::Error::Credentials("no token for you".into())) })
        }
        fn reset_older_than(&self, _: Instant) {}
    }

    /// Serves `/whoami` over TLS on 127.0.0.1: 200 with the bearer token when it is the `accepted` one, else 401.
    async fn server(accepted: Arc<Mutex<String>>) -> Config {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
        let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key_der)
            .unwrap();
        let mut tls = tls;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, accepted) = (acceptor.clone(), accepted.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let accepted = accepted.clone();
                        async move {
                            let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
                            let token = auth.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default();
                            let ok = token == *accepted.lock().unwrap();
                            let (code, body) = if ok {
                                (200, format!(r#"{{"token":"{token}"}}"#))
                            } else {
                                (
                                    401,
                                    r#"{"kind":"Status","code":401,"reason":"Unauthorized","message":"Unauthorized"}"#
                                        .into(),
                                )
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder().status(code).body(Full::new(Bytes::from(body))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Config {
            server: format!("https://127.0.0.1:{port}"),
            ca_pem: Some(cert.pem().into_bytes()),
            token: Some("static".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn each_request_carries_the_current_token_and_a_401_resets_it() {
        let accepted = Arc::new(Mutex::new("static".to_string()));
        let cfg = server(accepted.clone()).await;
        let plain = Client::new(&cfg).unwrap();
        assert_eq!(plain.request(http::Method::GET, "/whoami", None).await.unwrap()["token"], "static");

        let source = Arc::new(Counter::default());
        let client = Client::new(&cfg).unwrap().with_token_source(source.clone());
        *accepted.lock().unwrap() = "tok-1".into();
        let got = client.request(http::Method::GET, "/whoami", None).await.unwrap();
        assert_eq!(got["token"], "tok-1", "the source's token replaces the configuration's");
        assert_eq!(*source.resets.lock().unwrap(), 0);

        // The server stops accepting tok-1: that request fails with the 401, and the next one has a new token.
        *accepted.lock().unwrap() = "tok-2".into();
        let err = client.request(http::Method::GET, "/whoami", None).await.unwrap_err();
        assert_eq!(err.code(), Some(401));
        assert_eq!(*source.resets.lock().unwrap(), 1);
        let got = client.request(http::Method::GET, "/whoami", None).await.unwrap();
        assert_eq!(got["token"], "tok-2");
        // Clones share the source.
        assert_eq!(client.clone().get_raw("/whoami").await.unwrap(), Bytes::from(r#"{"token":"tok-2"}"#));

        let failing = Client::new(&cfg).unwrap().with_token_source(Arc::new(Failing));
        let err = failing.request(http::Method::GET, "/whoami", None).await.unwrap_err();
        assert!(matches!(err, crate::Error::Credentials(ref m) if m == "no token for you"), "{err}");
    }
}
