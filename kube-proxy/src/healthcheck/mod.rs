//! kube-proxy's health checking (upstream's `pkg/proxy/healthcheck`): the proxier health server on
//! `healthzBindAddress` (`/healthz`, `/livez`), the per-Service health check node ports of LoadBalancer Services
//! with `externalTrafficPolicy: Local`, and the small plain-HTTP server both use.

mod proxier_health;
mod service_health;

pub use proxier_health::ProxierHealthServer;
pub use service_health::ServiceHealthServer;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

/// An answer: status, content type, extra headers, body.
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn new(status: StatusCode, content_type: &'static str, body: String) -> Self {
        Reply { status, content_type, headers: Vec::new(), body }
    }
}

/// Answers a request path.
pub type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

fn respond(r: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(r.body)));
    *resp.status_mut() = r.status;
    if let Ok(v) = header::HeaderValue::from_str(r.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert("x-content-type-options", header::HeaderValue::from_static("nosniff"));
    for (k, v) in r.headers {
        if let Ok(v) = header::HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// Serves `handler` over plain HTTP on `listener` until `stop` turns true.
pub async fn serve(listener: tokio::net::TcpListener, handler: Handler, mut stop: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let reply = handler(req.uri().path());
                async move { Ok::<_, Infallible>(respond(reply)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Go's `time.Time.String()` layout, as upstream's JSON answers carry it: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn go_time(t: std::time::SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{} +0000 UTC", ts.strftime("%Y-%m-%d %H:%M:%S%.f"))
}
