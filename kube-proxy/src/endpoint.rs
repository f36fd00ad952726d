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
    pub zone_hints: BTreeSet<String>,
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
