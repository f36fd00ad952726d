//! The pod network across nodes, as flannel's host-gw backend: a route to every other node's `spec.podCIDR(s)` via
//! that node's InternalIP, kept in step with the Node informer (added, moved, removed). The nodes must share a link
//! (layer 2), as host-gw requires. Routes carry their own protocol number ([`RTPROT_KUBELET`]), so only the routes
//! this code made are ever replaced or removed, and they survive a kubelet restart (as flannel's do).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use ipnetwork::IpNetwork;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{RouteMessageBuilder, packet_route::AddressFamily};
use serde_json::Value;

/// The `proto` of our routes (`ip route show proto 107`); unassigned in iproute2's `rt_protos`.
pub const RTPROT_KUBELET: u8 = 107;

/// How often every route is checked again even without Node changes (a route removed by hand comes back).
pub const RESYNC_PERIOD: Duration = Duration::from_secs(60);

/// After a failed sync, the next try.
const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("opening a netlink socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("route to {0}: {1}")]
    Route(IpNetwork, String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A route to a pod CIDR through a node's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub destination: IpNetwork,
    pub gateway: IpAddr,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {}", self.destination, self.gateway)
    }
}

/// The host's routing table, as far as our routes go: the real one is netlink ([`Netlink`]), tests record.
pub trait RouteTable: Send + Sync + 'static {
    /// The routes with our protocol in the main table.
    fn list(&self) -> impl Future<Output = Result<Vec<Route>>> + Send;
    /// Adds a route; with `replace`, changes ours to that destination in place (`ip route replace`).
    fn add(&self, route: Route, replace: bool) -> impl Future<Output = Result<()>> + Send;
    fn delete(&self, route: Route) -> impl Future<Output = Result<()>> + Send;
}

/// The routes that should exist on `node_name`: each other node's pod CIDRs via its InternalIP of the same family.
pub fn desired<'a>(nodes: impl IntoIterator<Item = &'a Value>, node_name: &str) -> BTreeMap<IpNetwork, IpAddr> {
    let mut routes = BTreeMap::new();
    for node in nodes {
        if runtime::name(node) == node_name {
            continue;
        }
        let mut cidrs: Vec<&str> = runtime::array(node, "/spec/podCIDRs").iter().filter_map(Value::as_str).collect();
        if cidrs.is_empty()
            && let Some(c) = node.pointer("/spec/podCIDR").and_then(Value::as_str)
        {
            cidrs.push(c);
        }
        let internal: Vec<IpAddr> = runtime::array(node, "/status/addresses")
            .iter()
            .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
            .filter_map(|a| a.get("address")?.as_str()?.parse().ok())
            .collect();
        for cidr in cidrs {
            let Ok(net) = cidr.parse::<IpNetwork>() else {
                tracing::warn!(node = runtime::name(node), cidr, "invalid pod CIDR");
                continue;
            };
            // The network address, as the kernel stores the route.
            let Ok(net) = IpNetwork::new(net.network(), net.prefix()) else { continue };
            match internal.iter().find(|ip| ip.is_ipv4() == net.is_ipv4()) {
                Some(gw) => {
                    routes.insert(net, *gw);
                }
                None => tracing::debug!(node = runtime::name(node), cidr, "no InternalIP of the pod CIDR's family"),
            }
        }
    }
    routes
}

/// Makes the table's routes of our protocol exactly `desired`: adds the missing, moves those whose node changed
/// address, removes those whose node (or pod CIDR) went away. Keeps going past a failing route; returns the first
/// error.
pub async fn sync<T: RouteTable>(table: &T, desired: &BTreeMap<IpNetwork, IpAddr>) -> Result<()> {
    let current: BTreeMap<IpNetwork, IpAddr> =
        table.list().await?.into_iter().map(|r| (r.destination, r.gateway)).collect();
    let mut first_error = None;
    for (dst, gw) in desired {
        let route = Route { destination: *dst, gateway: *gw };
        let result = match current.get(dst) {
            Some(have) if have == gw => continue,
            // Ours, through another node: replace it in place.
            Some(_) => table.add(route, true).await,
            // Not ours (or absent): add, never clobbering a route someone else made to that destination.
            None => table.add(route, false).await,
        };
        match result {
            Ok(()) => tracing::info!(route = %route, "added the route to a node's pod CIDR"),
            Err(e) => {
                tracing::warn!(route = %route, error = %e, "adding a pod CIDR route");
                first_error.get_or_insert(e);
            }
        }
    }
    for (dst, gw) in &current {
        if desired.contains_key(dst) {
            continue;
        }
        let route = Route { destination: *dst, gateway: *gw };
        match table.delete(route).await {
            Ok(()) => tracing::info!(route = %route, "removed the route to a pod CIDR no node has"),
            Err(e) => {
                tracing::warn!(route = %route, error = %e, "removing a pod CIDR route");
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Keeps the routes in step with `nodes` (an informer of every Node) until `stop`: after the informer's first list,
/// on every Node change, every [`RESYNC_PERIOD`], and [`RETRY_AFTER`] a failure.
pub async fn run<T: RouteTable>(
    table: T,
    nodes: runtime::Informer,
    node_name: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut events = nodes.subscribe();
    tokio::select! {
        synced = nodes.wait_synced() => if !synced { return },
        _ = stop.changed() => return,
    }
    tracing::info!(node = %node_name, "programming routes to the other nodes' pod CIDRs");
    loop {
        let desired = desired(nodes.store().list().iter().map(|n| n.as_ref()), &node_name);
        let wait = match sync(&table, &desired).await {
            Ok(()) => RESYNC_PERIOD,
            Err(_) => RETRY_AFTER,
        };
        tokio::select! {
            n = events.recv() => {
                if n.is_none() {
                    return;
                }
                // One sync for a burst of changes.
                while events.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The kernel's routing table through rtnetlink.
#[derive(Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// A netlink connection in this thread's network namespace, driven on the current Tokio runtime.
    pub fn new() -> Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// Over a connection made elsewhere (e.g. opened inside another network namespace).
    pub fn from_handle(handle: rtnetlink::Handle) -> Self {
        Netlink { handle }
    }

    fn message(route: Route) -> Result<RouteMessage> {
        let proto = RouteProtocol::from(RTPROT_KUBELET);
        match (route.destination, route.gateway) {
            (IpNetwork::V4(dst), IpAddr::V4(gw)) => Ok(RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(dst.network(), dst.prefix())
                .gateway(gw)
                .protocol(proto)
                .build()),
            (IpNetwork::V6(dst), IpAddr::V6(gw)) => Ok(RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(dst.network(), dst.prefix())
                .gateway(gw)
                .protocol(proto)
                .build()),
            (dst, gw) => Err(Error::Route(dst, format!("gateway {gw} is of another family"))),
        }
    }

    /// A route of ours from a dumped message, if it is one.
    fn ours(msg: &RouteMessage) -> Option<Route> {
        if msg.header.protocol != RouteProtocol::from(RTPROT_KUBELET)
            || msg.header.table != rtnetlink::packet_route::route::RouteHeader::RT_TABLE_MAIN
        {
            return None;
        }
        let addr = |a: &RouteAddress| match a {
            RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
            RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
            _ => None,
        };
        let mut dst = None;
        let mut gw = None;
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(a) => dst = addr(a),
                RouteAttribute::Gateway(a) => gw = addr(a),
                _ => {}
            }
        }
        let dst = match (dst, msg.header.address_family) {
            (Some(d), _) => d,
            (None, AddressFamily::Inet6) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            (None, _) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        };
        let destination = IpNetwork::new(dst, msg.header.destination_prefix_length).ok()?;
        Some(Route { destination, gateway: gw? })
    }
}

impl RouteTable for Netlink {
    async fn list(&self) -> Result<Vec<Route>> {
        let mut routes = Vec::new();
        for query in [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let mut dump = self.handle.route().get(query).execute();
            while let Some(msg) = dump.try_next().await? {
                routes.extend(Self::ours(&msg));
            }
        }
        Ok(routes)
    }

    async fn add(&self, route: Route, replace: bool) -> Result<()> {
        let request = self.handle.route().add(Self::message(route)?);
        let request = if replace { request.replace() } else { request };
        Ok(request.execute().await?)
    }

    async fn delete(&self, route: Route) -> Result<()> {
        Ok(self.handle.route().del(Self::message(route)?).execute().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    /// A routing table in memory that records what was done to it.
    #[derive(Default)]
    struct Recording {
        ours: Mutex<BTreeMap<IpNetwork, IpAddr>>,
        /// Routes of other owners: an add to their destination fails as the kernel's EEXIST.
        foreign: Vec<IpNetwork>,
        log: Mutex<Vec<String>>,
    }

    impl RouteTable for Recording {
        async fn list(&self) -> Result<Vec<Route>> {
            let ours = self.ours.lock().unwrap();
            Ok(ours.iter().map(|(d, g)| Route { destination: *d, gateway: *g }).collect())
        }

        async fn add(&self, route: Route, replace: bool) -> Result<()> {
            self.log.lock().unwrap().push(format!("{} {route}", if replace { "replace" } else { "add" }));
            if !replace && self.foreign.contains(&route.destination) {
                return Err(Error::Route(route.destination, "File exists".into()));
            }
            self.ours.lock().unwrap().insert(route.destination, route.gateway);
            Ok(())
        }

        async fn delete(&self, route: Route) -> Result<()> {
            self.log.lock().unwrap().push(format!("del {route}"));
            self.ours.lock().unwrap().remove(&route.destination);
            Ok(())
        }
    }

    fn node(name: &str, cidrs: &[&str], ips: &[&str]) -> Value {
        let addresses: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"type": "InternalIP", "address": ip}))
            .chain([json!({"type": "Hostname", "address": name})])
            .collect();
        json!({"metadata": {"name": name}, "spec": {"podCIDR": cidrs.first(), "podCIDRs": cidrs},
               "status": {"addresses": addresses}})
    }

    #[test]
    fn routes_to_the_other_nodes_pod_cidrs_by_family() {
        let nodes = [
            node("a", &["10.244.0.0/24"], &["192.168.5.1"]),
            node("b", &["10.244.1.0/24", "fd00:10:244:1::/64"], &["192.168.5.2", "fd00::2"]),
            // No pod CIDR yet, or no InternalIP: nothing.
            node("c", &[], &["192.168.5.3"]),
            node("d", &["10.244.3.0/24"], &[]),
            // Only a v4 address: no route for the v6 CIDR.
            node("e", &["10.244.4.7/24", "fd00:10:244:4::/64"], &["192.168.5.4"]),
        ];
        let d = desired(nodes.iter(), "a");
        let got: Vec<String> = d.iter().map(|(n, g)| format!("{n} via {g}")).collect();
        assert_eq!(
            got,
            ["10.244.1.0/24 via 192.168.5.2", "10.244.4.0/24 via 192.168.5.4", "fd00:10:244:1::/64 via fd00::2"]
        );
        // Only podCIDR (older nodes): still routed.
        let old = json!({"metadata": {"name": "f"}, "spec": {"podCIDR": "10.244.5.0/24"},
                          "status": {"addresses": [{"type": "InternalIP", "address": "192.168.5.5"}]}});
        assert_eq!(desired([&old], "a").len(), 1);
    }

    #[tokio::test]
    async fn sync_adds_moves_and_removes_only_its_own_routes() {
        let net = |s: &str| s.parse::<IpNetwork>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let table = Recording { foreign: vec![net("10.244.9.0/24")], ..Default::default() };
        table.ours.lock().unwrap().insert(net("10.244.7.0/24"), ip("192.168.5.7"));
        table.ours.lock().unwrap().insert(net("10.244.2.0/24"), ip("192.168.5.9"));
        let want: BTreeMap<_, _> = [
            (net("10.244.1.0/24"), ip("192.168.5.2")),
            (net("10.244.2.0/24"), ip("192.168.5.3")),
            (net("10.244.9.0/24"), ip("192.168.5.4")),
        ]
        .into();
        let err = sync(&table, &want).await.unwrap_err();
        assert!(err.to_string().contains("10.244.9.0/24"), "{err}");
        assert_eq!(
            *table.log.lock().unwrap(),
            [
                "add 10.244.1.0/24 via 192.168.5.2",
                "replace 10.244.2.0/24 via 192.168.5.3",
                "add 10.244.9.0/24 via 192.168.5.4",
                "del 10.244.7.0/24 via 192.168.5.7",
            ]
        );
        // In step: nothing more to do but the route someone else owns.
        table.log.lock().unwrap().clear();
        let _ = sync(&table, &want).await;
        assert_eq!(*table.log.lock().unwrap(), ["add 10.244.9.0/24 via 192.168.5.4"]);
    }
}
