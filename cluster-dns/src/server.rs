//! A running configuration: the Corefile turned into plugin chains per listen address, the listeners, the HTTP
//! endpoints of `health`, `ready` and `prometheus`, and reloads. A reload builds the whole new configuration
//! first; if any part fails (syntax, an unknown plugin, a bad argument, a port that cannot be bound) the error is
//! logged and the previous configuration keeps serving. Otherwise the new chains are swapped in under the same
//! sockets, so no query is dropped.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::controller::Controller;
use crate::corefile::{self, ZoneAddr};
use crate::dnsserver::{self, Block, Dispatcher, Table};
use crate::http::{HttpEndpoints, Routes};
use crate::plugin::{self, ORDER, Plugin, ServerSettings, Setup};

/// Process-wide things plugins share across reloads: API connections and their controllers.
pub struct Env {
    /// The API client configuration when none is named in the Corefile (None: `$KUBECONFIG`, then in-cluster).
    pub client: Option<client::Config>,
    controllers: Mutex<HashMap<String, Arc<Controller>>>,
    /// A controller every kubernetes plugin uses instead of watching the API (tests).
    pub fixed_controller: Option<Arc<Controller>>,
    /// The port of keys without one (`-dns.port`).
    pub default_port: u16,
    /// Where listeners bind when the Corefile does not say (`bind`).
    pub default_bind: IpAddr,
}

impl Env {
    pub fn new(client: Option<client::Config>, default_port: u16) -> Self {
        Env {
            client,
            controllers: Mutex::default(),
            fixed_controller: None,
            default_port,
            default_bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

    /// The controller for an API connection (the default, or a kubeconfig file and context), started once.
    pub fn controller(&self, kubeconfig: Option<&(String, Option<String>)>) -> Result<Arc<Controller>, String> {
        if let Some(c) = &self.fixed_controller {
            return Ok(c.clone());
        }
        let key = kubeconfig.map(|(p, c)| format!("{p}#{}", c.as_deref().unwrap_or_default())).unwrap_or_default();
        let mut map = self.controllers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let cfg = match kubeconfig {
            Some((path, context)) => {
                client::Config::from_kubeconfig_context(path, context.as_deref()).map_err(|e| e.to_string())?
            }
            None => match &self.client {
                Some(c) => c.clone(),
                None => client::Config::infer().map_err(|e| e.to_string())?,
            },
        };
        let c = Controller::start(client::Client::new(&cfg).map_err(|e| e.to_string())?);
        map.insert(key, c.clone());
        Ok(c)
    }

    /// The addresses a server block answers on (CoreDNS's `boundIPs`): its bind addresses, or every interface's
    /// when it binds to all.
    pub fn local_ips(&self, _keys: &[ZoneAddr]) -> Vec<IpAddr> {
        if !self.default_bind.is_unspecified() {
            return vec![self.default_bind];
        }
        let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| !i.is_loopback())
            .map(|i| i.ip())
            .collect();
        if ips.is_empty() {
            ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        ips
    }
}

/// A built configuration, not yet serving.
pub struct Config {
    /// Blocks per listen address.
    pub tables: BTreeMap<SocketAddr, Vec<Block>>,
    pub settings: ServerSettings,
    /// Every plugin of every chain (for readiness).
    pub plugins: Vec<Arc<dyn Plugin>>,
    pub text: String,
}

/// Builds a configuration from Corefile text: parses it, orders each block's plugins as CoreDNS does and runs
/// their setups. Errors are worded as CoreDNS's.
pub fn build(text: &str, file: &str, env: &Env) -> Result<Config, String> {
    let blocks = corefile::parse(text, file, env.default_port).map_err(|e| e.to_string())?;
    let mut settings = ServerSettings::default();
    let mut tables: BTreeMap<SocketAddr, Vec<Block>> = BTreeMap::new();
    let mut plugins = Vec::new();
    for block in &blocks {
        let mut directives: Vec<&corefile::Directive> = Vec::new();
        let mut binds: Vec<IpAddr> = Vec::new();
        for d in &block.directives {
            if d.name == "bind" {
                if d.args.is_empty() {
                    return Err(format!(
                        "{file}:{} - Error during parsing: Wrong argument count or unexpected line ending after 'bind'",
                        d.line
                    ));
                }
                for a in &d.args {
                    binds.push(a.parse().map_err(|_| {
                        format!("{file}:{} - Error during parsing: plugin/bind: not a valid IP address: {a}", d.line)
                    })?);
                }
                continue;
            }
            if !ORDER.contains(&d.name.as_str()) {
                return Err(format!("{file}:{} - Error during parsing: Unknown directive '{}'", d.line, d.name));
            }
            let once = ["cache", "forward", "kubernetes", "health", "ready", "reload", "loop", "loadbalance", "errors"];
            if once.contains(&d.name.as_str()) && directives.iter().any(|x| x.name == d.name) {
                return Err(format!(
                    "{file}:{} - Error during parsing: plugin/{}: this plugin can only be used once per Server Block",
                    d.line, d.name
                ));
            }
            directives.push(d);
        }
        directives.sort_by_key(|d| ORDER.iter().position(|n| *n == d.name).unwrap_or(usize::MAX));
        let mut chain: Vec<Arc<dyn Plugin>> = Vec::new();
        let mut setup = Setup { keys: &block.keys, env, settings: &mut settings, file };
        for d in directives {
            if let Some(p) = plugin::setup(d, &mut setup)? {
                chain.push(p);
            }
        }
        if binds.is_empty() {
            binds.push(env.default_bind);
        }
        let chain: Arc<[Arc<dyn Plugin>]> = chain.into();
        plugins.extend(chain.iter().cloned());
        for key in &block.keys {
            let server = Arc::new(format!("dns://:{}", key.port));
            let zone_label = Arc::new(key.zone.clone());
            for p in chain.iter() {
                crate::metrics::metrics()
                    .plugin_enabled
                    .get_or_create(&crate::metrics::PluginLabels {
                        server: server.clone(),
                        zone: zone_label.clone(),
                        view: "",
                        name: p.name(),
                    })
                    .set(1);
            }
            for ip in &binds {
                tables.entry(SocketAddr::new(*ip, key.port)).or_default().push(Block {
                    zone: key.zone.clone(),
                    chain: chain.clone(),
                    server: server.clone(),
                    zone_label: zone_label.clone(),
                });
            }
        }
    }
    Ok(Config { tables, settings, plugins, text: text.to_string() })
}

struct Listener {
    dispatcher: Arc<Dispatcher>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The serving state: listeners by address, HTTP endpoints, the active configuration's settings.
pub struct Instance {
    pub env: Arc<Env>,
    listeners: Mutex<BTreeMap<SocketAddr, Listener>>,
    http: HttpEndpoints,
    current: Mutex<Option<(String, ServerSettings)>>,
}

impl Instance {
    pub fn new(env: Arc<Env>) -> Self {
        Instance { env, listeners: Mutex::default(), http: HttpEndpoints::default(), current: Mutex::default() }
    }

    /// The addresses DNS is served on (with the ports actually bound).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }

    /// The active configuration's settings.
    pub fn settings(&self) -> Option<ServerSettings> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(_, s)| s.clone())
    }

    /// The Corefile text being served.
    pub fn corefile(&self) -> Option<String> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(t, _)| t.clone())
    }

    /// Builds and starts serving `text`; on any error the previous configuration stays in place.
    pub async fn apply(&self, text: &str, file: &str) -> Result<(), String> {
        let config = build(text, file, &self.env)?;
        // Bind what is new before touching what serves.
        let mut fresh: BTreeMap<SocketAddr, (tokio::net::UdpSocket, tokio::net::TcpListener)> = BTreeMap::new();
        {
            let existing = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            for addr in config.tables.keys() {
                if existing.contains_key(addr) {
                    continue;
                }
                let udp = bind_udp(*addr).map_err(|e| format!("listen udp {addr}: {e}"))?;
                let tcp = bind_tcp(*addr).map_err(|e| format!("listen tcp {addr}: {e}"))?;
                fresh.insert(*addr, (udp, tcp));
            }
        }
        let routes = Routes::from_config(&config);
        self.http.apply(routes).await?;
        let Config { tables, settings, text, .. } = config;
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        listeners.retain(|addr, _| tables.contains_key(addr));
        for (addr, blocks) in tables {
            let table = Table::new(blocks);
            if let Some(l) = listeners.get(&addr) {
                l.dispatcher.table.store(Arc::new(table));
                continue;
            }
            let Some((udp, tcp)) = fresh.remove(&addr) else { continue };
            let dispatcher = Dispatcher::new(table);
            let tasks =
                vec![dnsserver::serve_udp(udp, dispatcher.clone()), dnsserver::serve_tcp(tcp, dispatcher.clone())];
            tracing::info!("serving DNS on {addr} (udp, tcp)");
            listeners.insert(addr, Listener { dispatcher, tasks });
        }
        drop(listeners);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((text, settings.clone()));
        Ok(())
    }

    /// Stops every listener and waits until their sockets are closed.
    pub async fn stop(&self) {
        let listeners = std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner()));
        let mut tasks = Vec::new();
        for (_, mut l) in listeners {
            tasks.append(&mut l.tasks);
        }
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        self.http.stop();
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(s)
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
