//! Puts kube-proxy together (upstream's `cmd/kube-proxy/app/server.go` and `pkg/proxy/config`): finds this
//! node's name and IPs, builds one [`Provider`] per IP family around the configured proxier, feeds them from the
//! shared informers (Services and EndpointSlices without a `service.kubernetes.io/service-proxy-name` or
//! `service.kubernetes.io/headless` label, and this Node), runs each family's bounded-frequency sync loop, and
//! serves `/healthz`, `/livez` and `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use client::Client;
use futures_util::StreamExt;
use ipnetwork::IpNetwork;
use runtime::informer::strip_managed_fields;
use runtime::transform::{items, retain, retain_in};
use runtime::watcher::{Config as WatchConfig, Event as WatchEvent, Watcher};
use runtime::{InformerParams, Notification, SharedInformerFactory};
use serde_json::Value;
use tokio::sync::watch;

use crate::boundedfrequencyrunner::BoundedFrequencyRunner;
use crate::config::{LocalMode, ProxyConfig, ProxyMode};
use crate::endpointschangetracker::{ANNOTATION_LAST_CHANGE_TRIGGER_TIME, LABEL_SERVICE_NAME};
use crate::exec::Exec;
use crate::healthcheck::{self, ProxierHealthServer, Reply, ServiceHealthServer};
use crate::iptables::IptablesProxier;
use crate::ipvs::{IpvsProxier, IpvsSettings};
use crate::localdetector::LocalDetector;
use crate::metrics::ProxyMetrics;
use crate::nftables::NftProxier;
use crate::nodeportaddresses::NodePortAddresses;
use crate::provider::{Provider, SyncOutcome};
use crate::proxier::Proxier;
use crate::serviceport::IpFamily;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The label selecting Services (and their slices) some other proxy handles.
pub const LABEL_SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// The label the EndpointSlice controller puts on the slices of headless Services.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";

/// What a running kube-proxy needs besides its configuration.
pub struct Context {
    pub config: ProxyConfig,
    pub client: Client,
    /// This node's name (hostnameOverride or the host name, lowercased).
    pub hostname: String,
    /// Runs nft, iptables, conntrack and ip (the real tools, possibly inside a network namespace).
    pub exec: Arc<dyn Exec>,
    /// How long to wait for this Node to learn its IPs (upstream waits; tests without a Node do not).
    pub node_wait: Duration,
}

/// A started kube-proxy.
pub struct Running {
    pub metrics: Arc<ProxyMetrics>,
    pub providers: Vec<Arc<Provider>>,
    pub healthz: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub service_health: Option<Arc<ServiceHealthServer>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    factory: SharedInformerFactory,
}

impl Running {
    /// Waits until `stop` (given to [`start`]) turned true and everything stopped. The rules stay in place.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        self.factory.shutdown();
    }
}

/// This node's name: the override, or the host name, lowercased (upstream's `GetHostname`).
pub fn hostname(override_: &str) -> String {
    let h = if override_.trim().is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default()
    } else {
        override_.to_string()
    };
    h.trim().to_lowercase()
}

fn node_ips(node: &Value) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = runtime::array(node, "/status/addresses")
        .iter()
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .chain(
            runtime::array(node, "/status/addresses")
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) == Some("ExternalIP")),
        )
        .filter_map(|a| a.get("address").and_then(Value::as_str)?.parse().ok())
        .collect();
    ips.dedup();
    ips
}

async fn get_node(client: &Client, name: &str, wait: Duration) -> Option<Value> {
    let api = client.api("", "v1", "nodes").ok()?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match api.get(name).await {
            Ok(n) if !node_ips(&n).is_empty() => return Some(n),
            Ok(n) if tokio::time::Instant::now() >= deadline => return Some(n),
            Err(_) if tokio::time::Instant::now() >= deadline => return None,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

fn local_detector(config: &ProxyConfig, family: IpFamily, node: Option<&Value>) -> LocalDetector {
    let cidr_of = |cidrs: Vec<String>| {
        cidrs
            .iter()
            .filter_map(|c| c.parse::<IpNetwork>().ok())
            .find(|c| family.matches(&c.ip()))
            .map(LocalDetector::Cidr)
    };
    let detector = match config.detect_local_mode {
        LocalMode::ClusterCidr => cidr_of(config.cluster_cidr.clone()),
        LocalMode::NodeCidr => cidr_of(
            node.map(|n| {
                runtime::array(n, "/spec/podCIDRs").iter().filter_map(Value::as_str).map(str::to_string).collect()
            })
            .unwrap_or_default(),
        ),
        LocalMode::BridgeInterface => {
            Some(LocalDetector::Bridge(config.bridge_interface.clone())).filter(|_| !config.bridge_interface.is_empty())
        }
        LocalMode::InterfaceNamePrefix => Some(LocalDetector::InterfacePrefix(config.interface_name_prefix.clone()))
            .filter(|_| !config.interface_name_prefix.is_empty()),
    };
    detector.unwrap_or_else(|| {
        tracing::info!(?family, mode = ?config.detect_local_mode, "no way to detect local traffic; off-cluster ClusterIP traffic is not masqueraded");
        LocalDetector::NoOp
    })
}

/// The proxier of the configured mode for one family.
pub fn new_proxier(
    config: &ProxyConfig,
    family: IpFamily,
    exec: Arc<dyn Exec>,
    detector: LocalDetector,
    node_ips: &[IpAddr],
) -> Result<Box<dyn Proxier>, BoxError> {
    let npa = NodePortAddresses::new(family, &config.node_port_addresses, node_ips);
    let node_ip = node_ips.iter().copied().find(|ip| family.matches(ip));
    Ok(match config.mode {
        ProxyMode::Nftables => Box::new(NftProxier::new(
            family,
            exec,
            config.masquerade_all,
            config.masquerade_bit,
            detector,
            npa,
            node_ip,
        )),
        ProxyMode::Iptables => Box::new(IptablesProxier::new(
            family,
            exec,
            config.masquerade_all,
            config.masquerade_bit,
            detector,
            npa,
            node_ip,
            config.sync_period,
        )),
        ProxyMode::Ipvs => {
            IpvsProxier::can_use(exec.as_ref()).map_err(|e| format!("can't use the IPVS proxier: {e}"))?;
            Box::new(IpvsProxier::new(
                family,
                exec,
                config.masquerade_all,
                config.masquerade_bit,
                detector,
                npa,
                node_ip,
                IpvsSettings {
                    scheduler: config.ipvs_scheduler.clone(),
                    strict_arp: config.ipvs_strict_arp,
                    tcp_timeout: config.ipvs_tcp_timeout,
                    tcp_fin_timeout: config.ipvs_tcp_fin_timeout,
                    udp_timeout: config.ipvs_udp_timeout,
                    exclude_cidrs: config.ipvs_exclude_cidrs.iter().filter_map(|c| c.parse().ok()).collect(),
                },
            ))
        }
    })
}

fn parse_addr(s: &str, what: &str) -> Result<Option<SocketAddr>, BoxError> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| format!("{what} {s:?}: {e}").into())
}

fn dispatch(providers: &[(Arc<Provider>, BoundedFrequencyRunner)], f: impl Fn(&Provider) -> bool) {
    for (p, runner) in providers {
        if f(p) {
            runner.run();
        }
    }
}

/// Starts kube-proxy: informers, providers, sync loops and health servers, until `stop`.
pub async fn start(ctx: Context, stop: watch::Receiver<bool>) -> Result<Running, BoxError> {
    let config = &ctx.config;
    let hostname = ctx.hostname.clone();
    let node = get_node(&ctx.client, &hostname, ctx.node_wait).await;
    let mut ips = node.as_ref().map(node_ips).unwrap_or_default();
    if ips.is_empty() {
        let bind: IpAddr = config.bind_address.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        ips.push(if bind.is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { bind });
        tracing::info!(node = %hostname, ip = %ips[0], "can't determine this node's IP, assuming it");
    }
    let primary = IpFamily::of(&ips[0]);
    let mut families = vec![primary];
    let secondary = if primary == IpFamily::V4 { IpFamily::V6 } else { IpFamily::V4 };
    let cidr_families =
        config.cluster_cidr.iter().filter_map(|c| c.parse::<IpNetwork>().ok()).map(|c| IpFamily::of(&c.ip()));
    if ips.iter().any(|ip| secondary.matches(ip)) || cidr_families.into_iter().any(|f| f == secondary) {
        families.push(secondary);
    }
    tracing::info!(mode = config.mode.as_str(), node = %hostname, ?families, "starting kube-proxy");

    let metrics = Arc::new(ProxyMetrics::default());
    let healthz_addr = parse_addr(&config.healthz_bind_address, "healthzBindAddress")?;
    let metrics_addr = parse_addr(&config.metrics_bind_address, "metricsBindAddress")?;
    let mut tasks = Vec::new();
    let health = Arc::new(ProxierHealthServer::new(2 * config.sync_period, metrics.clone()));
    let mut bound_healthz = None;
    if let Some(addr) = healthz_addr {
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("healthz {addr}: {e}"))?;
        bound_healthz = l.local_addr().ok();
        tracing::info!(addr = ?bound_healthz, "serving /healthz and /livez");
        tasks.push(tokio::spawn(healthcheck::serve(l, health.handler(), stop.clone())));
    }
    let mut bound_metrics = None;
    if let Some(addr) = metrics_addr {
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("metrics {addr}: {e}"))?;
        bound_metrics = l.local_addr().ok();
        let (m, mode) = (metrics.clone(), config.mode.as_str());
        let handler: healthcheck::Handler = Arc::new(move |path: &str| match path {
            "/metrics" => Reply::new(http::StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", m.render()),
            "/healthz" => Reply::new(http::StatusCode::OK, "text/plain; charset=utf-8", "ok".into()),
            "/proxyMode" => Reply::new(http::StatusCode::OK, "text/plain; charset=utf-8", mode.into()),
            _ => Reply::new(http::StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "404 page not found\n".into()),
        });
        tracing::info!(addr = ?bound_metrics, "serving /metrics");
        tasks.push(tokio::spawn(healthcheck::serve(l, handler, stop.clone())));
    }

    // Health check node ports: on every address, or on those of nodePortAddresses (primary family).
    let npa = NodePortAddresses::new(primary, &config.node_port_addresses, &ips);
    let hc_addresses = if npa.match_all() {
        vec![if primary == IpFamily::V4 { IpAddr::from([0, 0, 0, 0]) } else { IpAddr::from([0u16; 8]) }]
    } else {
        npa.node_ips(ctx.exec.as_ref()).unwrap_or_default()
    };
    let service_health =
        Arc::new(ServiceHealthServer::new(hc_addresses, tokio::runtime::Handle::current(), Some(health.clone())));

    let mut providers: Vec<(Arc<Provider>, BoundedFrequencyRunner)> = Vec::new();
    for family in &families {
        let detector = local_detector(config, *family, node.as_ref());
        let proxier = new_proxier(config, *family, ctx.exec.clone(), detector, &ips)?;
        let provider = Arc::new(Provider::new(
            proxier,
            &hostname,
            ctx.exec.clone(),
            config.sync_period,
            metrics.clone(),
            Some(health.clone()),
            (*family == primary).then(|| service_health.clone()),
        ));
        // nftables: maxInterval is an hour as upstream (no periodic full resync); iptables and ipvs: syncPeriod.
        let max_interval = if matches!(config.mode, ProxyMode::Iptables | ProxyMode::Ipvs) {
            config.sync_period
        } else {
            Duration::from_secs(3600)
        };
        let runner = BoundedFrequencyRunner::new("sync-runner", config.min_sync_period, max_interval, 2);
        health.updated(*family);
        let (p, r, sync_period) = (provider.clone(), runner.clone(), config.sync_period);
        let loop_runner = runner.clone();
        let stop_loop = stop.clone();
        tasks.push(tokio::spawn(async move {
            loop_runner
                .run_loop(
                    move || {
                        if p.sync_proxy_rules() == SyncOutcome::Failed {
                            r.retry_after(sync_period);
                        }
                    },
                    stop_loop,
                )
                .await
        }));
        providers.push((provider, runner));
    }

    // Only the trackers read Services and EndpointSlices, and they keep what each one contributes (a Service's
    // ports, a slice's endpoints), which is all an update, a delete or a relist needs: both are watched without an
    // informer store (at 10,000 Services x 10 endpoints the stores' JSON was ~100 MB), each object cut down as it
    // arrives to the fields the trackers read (client-go's informer transforms). The Node informer keeps all but
    // managed fields (labels, taints, addresses).
    let selector = format!("!{LABEL_SERVICE_PROXY_NAME},!{LABEL_HEADLESS}");
    let watch = |group: &str, plural: &str, slim: runtime::watcher::Transform| -> Result<Watcher, client::Error> {
        Ok(Watcher::new(
            ctx.client.api(group, "v1", plural)?,
            &client::ListParams { label_selector: Some(selector.clone()), ..Default::default() },
            WatchConfig { transform: Some(slim), ..Default::default() },
        ))
    };
    let services = watch("", "services", slim_service)?;
    let slices = watch("discovery.k8s.io", "endpointslices", slim_endpoint_slice)?;
    let factory = SharedInformerFactory::with_transform(ctx.client.clone(), Default::default(), strip_managed_fields);
    let nodes =
        factory.informer_for("", "v1", "nodes", InformerParams::all().fields(&format!("metadata.name={hostname}")))?;
    let mut node_events = nodes.subscribe();
    let providers = Arc::new(providers);
    let feeder_providers = providers.clone();
    let mut feeder_stop = stop.clone();
    tasks.push(tokio::spawn(async move {
        let ps = &feeder_providers;
        let mut initialized = false;
        let (mut services_listed, mut slices_listed) = (false, false);
        let mut svc_events = std::pin::pin!(services.into_stream());
        let mut slice_events = std::pin::pin!(slices.into_stream());
        loop {
            tokio::select! {
                Some((ev, _)) = svc_events.next() => match &ev {
                    WatchEvent::Restarted(list) => {
                        dispatch(ps, |p| p.on_services_listed(list));
                        services_listed = true;
                    }
                    WatchEvent::Applied(s) => dispatch(ps, |p| p.on_service(None, Some(s))),
                    WatchEvent::Deleted(s) => dispatch(ps, |p| p.on_service(Some(s), None)),
                },
                Some((ev, _)) = slice_events.next() => match &ev {
                    WatchEvent::Restarted(list) => {
                        dispatch(ps, |p| p.on_endpoint_slices_listed(list));
                        slices_listed = true;
                    }
                    WatchEvent::Applied(s) => dispatch(ps, |p| p.on_endpoint_slice(s, false)),
                    WatchEvent::Deleted(s) => dispatch(ps, |p| p.on_endpoint_slice(s, true)),
                },
                Some(n) = node_events.recv() => match &n {
                    Notification::Added(node) | Notification::Updated { new: node, .. } => dispatch(ps, |p| p.on_node(Some(node))),
                    Notification::Deleted(_) => dispatch(ps, |p| p.on_node(None)),
                    Notification::Resync(_) => {}
                },
                _ = tokio::time::sleep(Duration::from_millis(20)), if !initialized => {}
                _ = feeder_stop.changed() => return,
                else => return,
            }
            // Once both watches listed everything and this loop handed every listed object to the trackers, sync
            // right away (upstream's OnServiceSynced / OnEndpointSlicesSynced).
            if !initialized && services_listed && slices_listed {
                initialized = true;
                for (p, runner) in ps.iter() {
                    p.on_services_synced();
                    p.on_endpoint_slices_synced();
                    runner.run();
                }
            }
        }
    }));
    Ok(Running {
        metrics,
        providers: providers.iter().map(|(p, _)| p.clone()).collect(),
        healthz: bound_healthz,
        metrics_addr: bound_metrics,
        service_health: Some(service_health),
        tasks,
        factory,
    })
}

/// The fields of a Service that the service change tracker reads (`serviceport::service_ports`).
pub fn slim_service(v: &mut Value) {
    retain(v, &["metadata", "spec", "status"]);
    retain_in(v, "metadata", &["name", "namespace", "uid", "resourceVersion"]);
    retain_in(
        v,
        "spec",
        &[
            "type",
            "clusterIP",
            "clusterIPs",
            "externalIPs",
            "loadBalancerSourceRanges",
            "sessionAffinity",
            "sessionAffinityConfig",
            "externalTrafficPolicy",
            "internalTrafficPolicy",
            "healthCheckNodePort",
            "ports",
        ],
    );
    if let Some(spec) = v.get_mut("spec") {
        for p in items(spec, "ports") {
            retain(p, &["name", "protocol", "port", "nodePort"]);
        }
    }
    retain_in(v, "status", &["loadBalancer"]);
    if let Some(lb) = v.get_mut("status").and_then(|s| s.get_mut("loadBalancer")) {
        retain(lb, &["ingress"]);
        for i in items(lb, "ingress") {
            retain(i, &["ip", "ipMode"]);
        }
    }
}

/// The fields of an EndpointSlice that the endpoints change tracker reads (`parse_slice` and the trigger time).
pub fn slim_endpoint_slice(v: &mut Value) {
    retain(v, &["metadata", "addressType", "endpoints", "ports"]);
    retain_in(v, "metadata", &["name", "namespace", "uid", "resourceVersion", "labels", "annotations"]);
    if let Some(meta) = v.get_mut("metadata") {
        retain_in(meta, "labels", &[LABEL_SERVICE_NAME]);
        retain_in(meta, "annotations", &[ANNOTATION_LAST_CHANGE_TRIGGER_TIME]);
    }
    for e in items(v, "endpoints") {
        retain(e, &["addresses", "conditions", "nodeName", "hints"]);
        retain_in(e, "conditions", &["ready", "serving", "terminating"]);
    }
    for p in items(v, "ports") {
        retain(p, &["name", "protocol", "port"]);
    }
}
