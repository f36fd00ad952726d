//! The health and metrics port (plain HTTP, as kube-router's health port and kube-proxy's): `/healthz` (503 with
//! the reason while the last sync failed) and Prometheus `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use runtime::daemon::Metrics;

use crate::controller::Health;

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn respond(path: &str, health: &Health, metrics: &Metrics) -> Response<Full<Bytes>> {
    match path {
        "/healthz" | "/livez" => match health.problem() {
            None => text(StatusCode::OK, "ok".into()),
            Some(p) => text(StatusCode::SERVICE_UNAVAILABLE, p),
        },
        "/metrics" => text(StatusCode::OK, metrics.render()),
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
    }
}

/// Serves on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Health,
    metrics: Metrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let (health, metrics) = (health.clone(), metrics.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = respond(req.uri().path(), &health, &metrics);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Binds `addr` (None or port 0: not served) and serves in the background.
pub async fn start(
    addr: Option<SocketAddr>,
    what: &str,
    health: Health,
    metrics: Metrics,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let Some(addr) = addr.filter(|a| a.port() != 0) else { return Ok(()) };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving {what}");
    tokio::spawn(serve(listener, health, metrics, stop));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_reports_a_failed_sync() {
        let (health, metrics) = (Health::default(), Metrics::default());
        metrics.add("network_policy_syncs_total", 1.0);
        assert_eq!(respond("/healthz", &health, &metrics).status(), StatusCode::OK);
        assert_eq!(respond("/metrics", &health, &metrics).status(), StatusCode::OK);
        assert_eq!(respond("/nope", &health, &metrics).status(), StatusCode::NOT_FOUND);
        health.set(Some("nft failed".into()));
        assert_eq!(respond("/healthz", &health, &metrics).status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
