//! ClusterIP and NodePort allocation. Each allocated IP or port is a key in storage
//! (`/ranges/serviceips/<ip>`, `/ranges/servicenodeports/<port>`), taken with a create that fails if it exists,
//! so concurrent creates (even on several apiservers sharing etcd) never hand out the same one. Released on delete.

use std::net::{IpAddr, Ipv4Addr};

use api_types::{ApiError, Cause};
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

fn ip_key(ip: Ipv4Addr) -> String {
    format!("/ranges/serviceips/{ip}")
}

fn port_key(port: u16) -> String {
    format!("/ranges/servicenodeports/{port}")
}

fn owner(ns: &str, name: &str) -> Bytes {
    Bytes::from(json!({"service": format!("{ns}/{name}")}).to_string())
}

fn random() -> u64 {
    uuid::Uuid::new_v4().as_u128() as u64
}

/// Takes a specific IP, or (None) a free one at random. Errors as upstream words them.
pub async fn allocate_ip(
    store: &Backend,
    cidr: &str,
    wanted: Option<&str>,
    ns: &str,
    name: &str,
) -> Result<String, ApiError> {
    let net = parse_range(cidr).map_err(ApiError::internal)?;
    let first = u32::from(net.network()) + 1;
    let size = net.size().saturating_sub(2).max(1);
    if let Some(w) = wanted {
        let invalid = |msg: &str| {
            ApiError::invalid("", "Service", name, vec![Cause::invalid("spec.clusterIPs", &json!([w]), msg)])
        };
        let ip: Ipv4Addr = w.parse().map_err(|_| invalid("must be a valid IP address"))?;
        let n = u32::from(ip);
        if n < first || n >= first + size {
            return Err(invalid(&format!(
                "failed to allocate IP {w}: the provided IP ({w}) is not in the valid range. The range of valid IPs is {cidr}"
            )));
        }
        return match store.create(&ip_key(ip), owner(ns, name), None).await {
            Ok(_) => Ok(w.to_string()),
            Err(StorageError::AlreadyExists { .. }) => {
                Err(invalid(&format!("failed to allocate IP {w}: provided IP is already allocated")))
            }
            Err(e) => Err(ApiError::unavailable(e.to_string())),
        };
    }
    // Skip the first IP (kept for the kubernetes Service) unless it is the only one.
    let start = random() % size as u64;
    for i in 0..size as u64 {
        let offset = ((start + i) % size as u64) as u32;
        if offset == 0 && size > 1 {
            continue;
        }
        let ip = Ipv4Addr::from(first + offset);
        match store.create(&ip_key(ip), owner(ns, name), None).await {
            Ok(_) => return Ok(ip.to_string()),
            Err(StorageError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(ApiError::unavailable(e.to_string())),
        }
    }
    Err(ApiError::internal("failed to allocate a serviceIP: range is full"))
}

/// Takes a specific node port, or (None) a free one at random.
pub async fn allocate_port(
    store: &Backend,
    range: &str,
    wanted: Option<u16>,
    field: &str,
    ns: &str,
    name: &str,
) -> Result<u16, ApiError> {
    let (lo, hi) = parse_port_range(range).map_err(ApiError::internal)?;
    if let Some(p) = wanted {
        let invalid = |msg: String| ApiError::invalid("", "Service", name, vec![Cause::invalid(field, &json!(p), msg)]);
        if p < lo || p > hi {
            return Err(invalid(format!(
                "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
            )));
        }
        return match store.create(&port_key(p), owner(ns, name), None).await {
            Ok(_) => Ok(p),
            Err(StorageError::AlreadyExists { .. }) => Err(invalid("provided port is already allocated".into())),
            Err(e) => Err(ApiError::unavailable(e.to_string())),
        };
    }
    let size = (hi - lo) as u64 + 1;
    let start = random() % size;
    for i in 0..size {
        let port = lo + ((start + i) % size) as u16;
        match store.create(&port_key(port), owner(ns, name), None).await {
            Ok(_) => return Ok(port),
            Err(StorageError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(ApiError::unavailable(e.to_string())),
        }
    }
    Err(ApiError::internal("failed to allocate a nodePort: range is full"))
}

pub async fn release_ip(store: &Backend, ip: &str) {
    if let Ok(ip) = ip.parse::<Ipv4Addr>() {
        let _ = store.delete(&ip_key(ip), None).await;
    }
}

pub async fn release_port(store: &Backend, port: u16) {
    let _ = store.delete(&port_key(port), None).await;
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
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_allocations_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Backend::Sqlite(
            crate::storage::sqlite::SqliteStore::open(crate::storage::sqlite::SqliteConfig::in_dir(dir.path()))
                .unwrap(),
        ));
        // A /28 has 14 usable IPs, one kept for the kubernetes Service: 13 to hand out.
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(
                async move { allocate_ip(&store, "10.0.0.0/28", None, "ns", &format!("s{i}")).await },
            ));
        }
        let mut got = Vec::new();
        let mut full = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(ip) => got.push(ip),
                Err(e) => {
                    assert!(e.message.contains("range is full"), "{e}");
                    full += 1;
                }
            }
        }
        assert_eq!((got.len(), full), (13, 7));
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 13);
        assert!(!got.contains(&"10.0.0.1".to_string()));
        let err = allocate_ip(&store, "10.0.0.0/28", Some(&got[0]), "ns", "x").await.unwrap_err();
        assert!(err.message.contains("provided IP is already allocated"), "{}", err.message);
        release_ip(&store, &got[0]).await;
        assert_eq!(allocate_ip(&store, "10.0.0.0/28", Some(&got[0]), "ns", "x").await.unwrap(), got[0]);
        let err = allocate_ip(&store, "10.0.0.0/28", Some("10.9.9.9"), "ns", "x").await.unwrap_err();
        assert_eq!(err.code, 422);
        let p = allocate_port(&store, "30000-30001", None, "spec.ports[0].nodePort", "ns", "a").await.unwrap();
        let q = allocate_port(&store, "30000-30001", None, "spec.ports[0].nodePort", "ns", "b").await.unwrap();
        assert_ne!(p, q);
        assert!(allocate_port(&store, "30000-30001", None, "spec.ports[0].nodePort", "ns", "c").await.is_err());
    }
}
