//! The HTTP endpoints of the `health` (`/health`, default `:8080`), `ready` (`/ready`, default `:8181`) and
//! `prometheus` (`/metrics`, default `localhost:9153`) plugins, plain HTTP as CoreDNS serves them; `/healthz`,
//! `/livez` and `/readyz` are answered too. Listeners survive reloads when their address stays; what each serves
//! is swapped with the configuration.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::plugin::Plugin;
use crate::server::Config;

/// What one address serves.
#[derive(Clone, Default)]
pub struct Routes {
    pub health: bool,
    /// The plugins `/ready` asks.
    pub ready: Option<Arc<Vec<Arc<dyn Plugin>>>>,
    pub metrics: bool,
}

/// Resolves a plugin's `[HOST]:PORT` address (`:8080` is every address, `localhost` is loopback).
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("invalid address {addr:?}: missing port"))?;
    let port: u16 = port.parse().map_err(|_| format!("invalid port in address {addr:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "" => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        "localhost" => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        h => h.parse().map_err(|_| format!("invalid host in address {addr:?}"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

impl Routes {
    /// The routes of every address a configuration names.
    pub fn from_config(c: &Config) -> Result<BTreeMap<SocketAddr, Routes>, String> {
        let mut out: BTreeMap<SocketAddr, Routes> = BTreeMap::new();
        if let Some((addr, _)) = &c.settings.health {
            out.entry(resolve(addr)?).or_default().health = true;
        }
        if let Some(addr) = &c.settings.ready {
            let readiness: Vec<Arc<dyn Plugin>> = c.plugins.iter().filter(|p| p.ready().is_some()).cloned().collect();
            out.entry(resolve(addr)?).or_default().ready = Some(Arc::new(readiness));
        }
        for addr in &c.settings.metrics {
            out.entry(resolve(addr)?).or_default().metrics = true;
        }
        Ok(out)
    }
}

struct Server {
    routes: Arc<ArcSwap<Routes>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The HTTP listeners.
#[derive(Default)]
pub struct HttpEndpoints {
    servers: Mutex<HashMap<SocketAddr, Server>>,
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn respond(routes: &Routes, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/health" if routes.health => text(StatusCode::OK, "OK".into()),
        "/healthz" | "/livez" if routes.health => text(StatusCode::OK, "ok".into()),
        "/ready" | "/readyz" if routes.ready.is_some() => {
            let plugins = routes.ready.as_ref().map(|p| p.as_slice()).unwrap_or_default();
            let mut waiting: Vec<&str> =
                plugins.iter().filter(|p| p.ready() == Some(false)).map(|p| p.name()).collect();
            waiting.dedup();
            if waiting.is_empty() {
                text(StatusCode::OK, "OK".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, waiting.join(","))
            }
        }
        "/metrics" if routes.metrics => {
            let mut r = text(StatusCode::OK, crate::metrics::metrics().render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
    }
}

impl HttpEndpoints {
    /// Serves `routes` (from [`Routes::from_config`]): binds new addresses first (an error leaves everything as it
    /// was), then swaps what existing ones serve and closes the ones no longer named.
    pub async fn apply(&self, routes: Result<BTreeMap<SocketAddr, Routes>, String>) -> Result<(), String> {
        let routes = routes?;
        let missing: Vec<SocketAddr> = {
            let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
            routes.keys().filter(|a| !servers.contains_key(a)).copied().collect()
        };
        let mut fresh = HashMap::new();
        for addr in missing {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("listen tcp {addr}: {e}"))?;
            fresh.insert(addr, l);
        }
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers.retain(|a, _| routes.contains_key(a));
        for (addr, r) in routes {
            if let Some(s) = servers.get(&addr) {
                s.routes.store(Arc::new(r));
                continue;
            }
            let Some(listener) = fresh.remove(&addr) else { continue };
            let shared = Arc::new(ArcSwap::from_pointee(r));
            let task = tokio::spawn(serve(listener, shared.clone())).abort_handle();
            tracing::info!("serving HTTP on {addr}");
            servers.insert(addr, Server { routes: shared, task });
        }
        Ok(())
    }

    pub fn stop(&self) {
        self.servers.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

async fn serve(listener: tokio::net::TcpListener, routes: Arc<ArcSwap<Routes>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let routes = routes.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = respond(&routes.load(), req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
