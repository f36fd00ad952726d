//! The ClusterIP and NodePort allocators (upstream's `ipallocator` and `portallocator`). Each allocated IP or port
//! is a key in storage (`/ranges/serviceips/<ip>`, `/ranges/servicenodeports/<port>`), taken with a create that
//! fails if it exists, so concurrent creates (even on several apiservers sharing etcd) never hand out the same one.
//! What a Service holds and when it is taken or given back is [`crate::service::alloc`]'s business.

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use ipnetwork::Ipv4Network;
use serde_json::json;

use crate::storage::{Backend, Storage, StorageError};

pub fn parse_range(cidr: &str) -> Result<Ipv4Network, String> {
    cidr.parse::<Ipv4Network>().map_err(|e| format!("invalid --service-cluster-ip-range {cidr:?}: {e}"))
}

/// The first usable IP of the range: the `kubernetes` Service's.
pub fn first_service_ip(cidr: &str) -> Result<IpAddr, String> {
    let net = parse_range(cidr)?;
    Ok(IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) + 1)))
}

pub fn parse_port_range(r: &str) -> Result<(u16, u16), String> {
    let (a, b) = r.split_once('-').ok_or_else(|| format!("invalid port range {r:?}"))?;
    let (a, b) =
        (a.trim().parse::<u16>().map_err(|e| e.to_string())?, b.trim().parse::<u16>().map_err(|e| e.to_string())?);
    if a > b {
        return Err(format!("invalid port range {r:?}"));
    }
    Ok((a, b))
}

/// Why an allocation failed, worded as upstream's allocator errors (the Service storage wraps them in a field
/// error or an internal error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// `ErrNotInRange` of the IP allocator.
    IpNotInRange {
        ip: String,
        range: String,
    },
    /// `ErrNotInRange` of the port allocator.
    PortNotInRange {
        range: String,
    },
    IpAllocated,
    PortAllocated,
    /// `ErrFull`.
    Full,
    /// The store did not answer.
    Storage(String),
}

impl std::fmt::Display for AllocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllocError::IpNotInRange { ip, range } => {
                write!(f, "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")
            }
            AllocError::PortNotInRange { range } => {
                write!(f, "provided port is not in the valid range. The range of valid ports is {range}")
            }
            AllocError::IpAllocated => f.write_str("provided IP is already allocated"),
            AllocError::PortAllocated => f.write_str("provided port is already allocated"),
            AllocError::Full => f.write_str("range is full"),
            AllocError::Storage(e) => f.write_str(e),
        }
    }
}

fn ip_key(ip: Ipv4Addr) -> String {
    format!("/ranges/serviceips/{ip}")
}

fn port_key(port: u16) -> String {
    format!("/ranges/servicenodeports/{port}")
}

/// What the key of an allocation records: the Service holding it.
fn owner(owner: &str) -> Bytes {
    Bytes::from(json!({"service": owner}).to_string())
}

fn random() -> u64 {
    uuid::Uuid::new_v4().as_u128() as u64
}

/// Takes `key`; Ok(false) when someone holds it.
async fn take(store: &Backend, key: &str, by: &str) -> Result<bool, AllocError> {
    match store.create(key, owner(by), None).await {
        Ok(_) => Ok(true),
        Err(StorageError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(AllocError::Storage(e.to_string())),
    }
}

/// The service IP range (`--service-cluster-ip-range`): network and broadcast addresses are never handed out, the
/// first address only when asked for by name (it is the `kubernetes` Service's).
#[derive(Debug, Clone)]
pub struct IpRange {
    net: Ipv4Network,
}

impl IpRange {
    pub fn new(cidr: &str) -> Result<Self, String> {
        Ok(IpRange { net: parse_range(cidr)? })
    }

    /// The range as upstream prints it (`10.96.0.0/12`).
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.net.network(), self.net.prefix())
    }

    fn first(&self) -> u32 {
        u32::from(self.net.network()) + 1
    }

    fn size(&self) -> u32 {
        self.net.size().saturating_sub(2).max(1)
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        n >= self.first() && n < self.first() + self.size()
    }

    /// Takes this IP for `by` (`<namespace>/<name>`). A dry run only checks the range, as upstream's.
    pub async fn allocate(&self, store: &Backend, ip: Ipv4Addr, by: &str, dry_run: bool) -> Result<(), AllocError> {
        if !self.in_range(ip) {
            return Err(AllocError::IpNotInRange { ip: ip.to_string(), range: self.cidr() });
        }
        if dry_run {
            return Ok(());
        }
        match take(store, &ip_key(ip), by).await? {
            true => Ok(()),
            false => Err(AllocError::IpAllocated),
        }
    }

    /// Takes a free IP at random. A dry run answers the network address without looking, as upstream's.
    pub async fn allocate_next(&self, store: &Backend, by: &str, dry_run: bool) -> Result<Ipv4Addr, AllocError> {
        if dry_run {
            return Ok(self.net.network());
        }
        let size = self.size() as u64;
        let start = random() % size;
        for i in 0..size {
            let offset = ((start + i) % size) as u32;
            // The first IP is kept for the kubernetes Service unless it is the only one.
            if offset == 0 && size > 1 {
                continue;
            }
            let ip = Ipv4Addr::from(self.first() + offset);
            if take(store, &ip_key(ip), by).await? {
                return Ok(ip);
            }
        }
        Err(AllocError::Full)
    }

    /// Whether someone holds this IP.
    pub async fn has(&self, store: &Backend, ip: Ipv4Addr) -> bool {
        store.get(&ip_key(ip), None).await.is_ok()
    }

    pub async fn release(&self, store: &Backend, ip: Ipv4Addr) {
        let _ = store.delete(&ip_key(ip), None).await;
    }
}

/// The node port range (`--service-node-port-range`).
#[derive(Debug, Clone, Copy)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

impl PortRange {
    pub fn new(range: &str) -> Result<Self, String> {
        let (lo, hi) = parse_port_range(range)?;
        Ok(PortRange { lo, hi })
    }

    pub fn contains(&self, port: i64) -> bool {
        (i64::from(self.lo)..=i64::from(self.hi)).contains(&port)
    }

    /// Takes this port (an int32 in the API) for `by`. A dry run checks the range and whether it is free without
    /// taking it.
    pub async fn allocate(&self, store: &Backend, port: i64, by: &str, dry_run: bool) -> Result<u16, AllocError> {
        let Some(port) = u16::try_from(port).ok().filter(|p| self.contains(i64::from(*p))) else {
            return Err(AllocError::PortNotInRange { range: format!("{}-{}", self.lo, self.hi) });
        };
        if dry_run {
            return match self.has(store, port).await {
                true => Err(AllocError::PortAllocated),
                false => Ok(port),
            };
        }
        match take(store, &port_key(port), by).await? {
            true => Ok(port),
            false => Err(AllocError::PortAllocated),
        }
    }

    /// Takes a free port at random. A dry run answers the base of the range without looking, as upstream's.
    pub async fn allocate_next(&self, store: &Backend, by: &str, dry_run: bool) -> Result<u16, AllocError> {
        if dry_run {
            return Ok(self.lo);
        }
        let size = (self.hi - self.lo) as u64 + 1;
        let start = random() % size;
        for i in 0..size {
            let port = self.lo + ((start + i) % size) as u16;
            if take(store, &port_key(port), by).await? {
                return Ok(port);
            }
        }
        Err(AllocError::Full)
    }

    /// Whether someone holds this port.
    pub async fn has(&self, store: &Backend, port: u16) -> bool {
        store.get(&port_key(port), None).await.is_ok()
    }

    pub async fn release(&self, store: &Backend, port: u16) {
        let _ = store.delete(&port_key(port), None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(first_service_ip("10.96.0.0/12").unwrap().to_string(), "10.96.0.1");
        assert_eq!(parse_port_range("30000-32767").unwrap(), (30000, 32767));
        assert!(parse_port_range("5-1").is_err());
        assert!(parse_range("nope").is_err());
        assert_eq!(IpRange::new("10.96.0.0/12").unwrap().cidr(), "10.96.0.0/12");
    }

    fn store(dir: &tempfile::TempDir) -> std::sync::Arc<Backend> {
        std::sync::Arc::new(Backend::Sqlite(
            crate::storage::sqlite::SqliteStore::open(crate::storage::sqlite::SqliteConfig::in_dir(dir.path()))
                .unwrap(),
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_allocations_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        // A /28 has 14 usable IPs, one kept for the kubernetes Service: 13 to hand out.
        let range = IpRange::new("10.0.0.0/28").unwrap();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (store, range) = (store.clone(), range.clone());
            tasks.push(tokio::spawn(async move { range.allocate_next(&store, &format!("ns/s{i}"), false).await }));
        }
        let mut got = Vec::new();
        let mut full = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(ip) => got.push(ip),
                Err(e) => {
                    assert_eq!(e, AllocError::Full);
                    assert_eq!(e.to_string(), "range is full");
                    full += 1;
                }
            }
        }
        assert_eq!((got.len(), full), (13, 7));
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 13);
        assert!(!got.contains(&"10.0.0.1".parse().unwrap()));
        let err = range.allocate(&store, got[0], "ns/x", false).await.unwrap_err();
        assert_eq!(err.to_string(), "provided IP is already allocated");
        range.release(&store, got[0]).await;
        assert!(!range.has(&store, got[0]).await);
        range.allocate(&store, got[0], "ns/x", false).await.unwrap();
        let err = range.allocate(&store, "10.9.9.9".parse().unwrap(), "ns/x", false).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the provided IP (10.9.9.9) is not in the valid range. The range of valid IPs is 10.0.0.0/28"
        );
        // The broadcast address is not handed out.
        assert!(range.allocate(&store, "10.0.0.15".parse().unwrap(), "ns/x", false).await.is_err());
        // A dry run takes nothing.
        assert_eq!(range.allocate_next(&store, "ns/y", true).await.unwrap().to_string(), "10.0.0.0");

        let ports = PortRange::new("30000-30001").unwrap();
        let p = ports.allocate_next(&store, "ns/a", false).await.unwrap();
        let q = ports.allocate_next(&store, "ns/b", false).await.unwrap();
        assert_ne!(p, q);
        assert_eq!(ports.allocate_next(&store, "ns/c", false).await.unwrap_err(), AllocError::Full);
        assert_eq!(ports.allocate(&store, p.into(), "ns/c", true).await.unwrap_err(), AllocError::PortAllocated);
        assert_eq!(
            ports.allocate(&store, 80, "ns/c", false).await.unwrap_err().to_string(),
            "provided port is not in the valid range. The range of valid ports is 30000-30001"
        );
        ports.release(&store, p).await;
        ports.allocate(&store, p.into(), "ns/c", true).await.unwrap();
        assert!(!ports.has(&store, p).await, "a dry run takes nothing");
        ports.allocate(&store, p.into(), "ns/c", false).await.unwrap();
        assert!(matches!(ports.allocate(&store, 70000, "ns/c", false).await, Err(AllocError::PortNotInRange { .. })));
    }
}
