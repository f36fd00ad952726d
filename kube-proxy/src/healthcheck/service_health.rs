//! Health check node ports (upstream's `ServiceHealthServer`): for each LoadBalancer Service with
//! `externalTrafficPolicy: Local`, a listener on its `healthCheckNodePort` answering 200 while this node has a
//! ready endpoint of it (and kube-proxy is healthy), 503 otherwise, so load balancers send traffic only to
//! nodes with local endpoints.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use http::StatusCode;
use tokio::sync::watch;

use super::{ProxierHealthServer, Reply, serve};
use crate::serviceport::ServiceName;

struct Listener {
    port: u16,
    stop: watch::Sender<bool>,
}

pub struct ServiceHealthServer {
    /// Where to listen (0.0.0.0, or the addresses of nodePortAddresses).
    addresses: Vec<IpAddr>,
    runtime: tokio::runtime::Handle,
    proxier_health: Option<Arc<ProxierHealthServer>>,
    listeners: Mutex<BTreeMap<ServiceName, Vec<Listener>>>,
    endpoints: Arc<Mutex<HashMap<ServiceName, usize>>>,
}

impl ServiceHealthServer {
    pub fn new(
        addresses: Vec<IpAddr>,
        runtime: tokio::runtime::Handle,
        proxier_health: Option<Arc<ProxierHealthServer>>,
    ) -> Self {
        ServiceHealthServer {
            addresses,
            runtime,
            proxier_health,
            listeners: Mutex::default(),
            endpoints: Arc::default(),
        }
    }

    /// The ports listened on now, by Service.
    pub fn ports(&self) -> BTreeMap<ServiceName, u16> {
        let l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().filter_map(|(k, v)| v.first().map(|l| (k.clone(), l.port))).collect()
    }

    /// Listens for exactly these Services' health check node ports.
    pub fn sync_services(&self, services: &BTreeMap<ServiceName, u16>) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        listeners.retain(|name, ls| {
            let keep = services.get(name).is_some_and(|p| ls.first().is_some_and(|l| l.port == *p));
            if !keep {
                tracing::info!(service = %name, "closing health check node port");
                for l in ls.iter() {
                    let _ = l.stop.send(true);
                }
            }
            keep
        });
        for (name, port) in services {
            if listeners.contains_key(name) {
                continue;
            }
            let mut ls = Vec::new();
            for ip in &self.addresses {
                let addr = SocketAddr::new(*ip, *port);
                let std_listener = match std::net::TcpListener::bind(addr) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(service = %name, %addr, error = %e, "failed to start health check node port");
                        continue;
                    }
                };
                let _ = std_listener.set_nonblocking(true);
                let (stop, stop_rx) = watch::channel(false);
                let handler = self.handler(name.clone());
                let _guard = self.runtime.enter();
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => {
                        self.runtime.spawn(serve(l, handler, stop_rx));
                        tracing::info!(service = %name, %addr, "opened health check node port");
                        ls.push(Listener { port: *port, stop });
                    }
                    Err(e) => tracing::error!(service = %name, error = %e, "health check node port listener"),
                }
            }
            listeners.insert(name.clone(), ls);
        }
    }

    /// The number of ready local endpoints of each Service.
    pub fn sync_endpoints(&self, counts: &BTreeMap<ServiceName, usize>) {
        let mut eps = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        eps.clear();
        eps.extend(counts.iter().map(|(k, v)| (k.clone(), *v)));
    }

    fn handler(&self, name: ServiceName) -> super::Handler {
        let endpoints = self.endpoints.clone();
        let proxier_health = self.proxier_health.clone();
        Arc::new(move |_path: &str| {
            let count = endpoints.lock().unwrap_or_else(|e| e.into_inner()).get(&name).copied().unwrap_or(0);
            let healthy = proxier_health.as_ref().is_none_or(|h| h.is_healthy().0);
            let status = if count != 0 && healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            let body = format!(
                "{{\n\t\"service\": {{\n\t\t\"namespace\": {:?},\n\t\t\"name\": {:?}\n\t}},\n\t\"localEndpoints\": {count},\n\t\"serviceProxyHealthy\": {healthy}\n}}",
                name.namespace, name.name
            );
            let mut reply = Reply::new(status, "application/json", body);
            reply.headers.push(("x-load-balancing-endpoint-weight", count.to_string()));
            reply
        })
    }
}

impl Drop for ServiceHealthServer {
    fn drop(&mut self) {
        for ls in self.listeners.lock().unwrap_or_else(|e| e.into_inner()).values() {
            for l in ls {
                let _ = l.stop.send(true);
            }
        }
    }
}
