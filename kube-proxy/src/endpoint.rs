//! One endpoint of a Service port as the proxiers see it (upstream's `BaseEndpointInfo` in `pkg/proxy/endpoint.go`).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// An endpoint address and port with its conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    /// On this node (`nodeName` is this node's name).
    pub is_local: bool,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// `hints.forZones[].name` (topology-aware routing).
    pub zone_hints: ZoneHints,
}

/// An endpoint's zone hints, boxed: almost no endpoint has any, and every endpoint of every Service is kept
/// (8 bytes here rather than an empty set's 24).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(clippy::box_collection)] // the box is the point: a thin pointer in every endpoint
pub struct ZoneHints(Option<Box<BTreeSet<String>>>);

impl ZoneHints {
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|z| z.is_empty())
    }

    pub fn contains(&self, zone: &str) -> bool {
        self.0.as_ref().is_some_and(|z| z.contains(zone))
    }

    pub fn insert(&mut self, zone: String) {
        self.0.get_or_insert_default().insert(zone);
    }
}

impl FromIterator<String> for ZoneHints {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        let zones: BTreeSet<String> = iter.into_iter().collect();
        ZoneHints((!zones.is_empty()).then(|| Box::new(zones)))
    }
}

impl Endpoint {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

/// `ip:port` (`[ip]:port` for IPv6), as upstream's `Endpoint.String()`.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr())
    }
}
