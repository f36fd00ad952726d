//! `nodeipam`: pod CIDRs for nodes, as upstream's pkg/controller/nodeipam range allocator.
//!
//! With `--allocate-node-cidrs` and `--cluster-cidr`, each node without `spec.podCIDR` gets the next free subnet of
//! `--node-cidr-mask-size` bits from the cluster CIDR (round-robin from the last allocation, as upstream's cidrset),
//! written as `spec.podCIDR` and `spec.podCIDRs`. CIDRs that nodes already have are marked used; a deleted node's
//! CIDR is released for reuse. When none is free the node gets a `CIDRNotAvailable` event and waits for one.
//!
//! Deliberate gaps: one cluster CIDR (the first of a comma-separated list; no dual-stack pairs and no
//! `--node-cidr-mask-size-ipv4/ipv6`), no `--service-cluster-ip-range` exclusion, and no cloud allocator.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use api_types::patch::PatchType;
use ipnetwork::IpNetwork;
use runtime::events::{EventType, Recorder};
use runtime::{Action, Controller, Informer, Notification};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{BoxError, Context, stopped};

/// The subnets of a cluster CIDR, by index.
#[derive(Debug, Clone)]
pub struct CidrSet {
    base: u128,
    v6: bool,
    /// Bits of a subnet's host part.
    host_bits: u32,
    count: u128,
}

impl CidrSet {
    pub fn new(cluster: &str, mask: u8) -> Result<CidrSet, String> {
        let net: IpNetwork = cluster.trim().parse().map_err(|e| format!("--cluster-cidr {cluster:?}: {e}"))?;
        let (bits, v6, base) = match net {
            IpNetwork::V4(n) => (32u32, false, u32::from(n.network()) as u128),
            IpNetwork::V6(n) => (128u32, true, u128::from(n.network())),
        };
        let prefix = net.prefix() as u32;
        let mask = mask as u32;
        if mask < prefix || mask > bits {
            return Err(format!("--node-cidr-mask-size {mask} must be between the cluster CIDR's {prefix} and {bits}"));
        }
        let count = 1u128.checked_shl(mask - prefix).unwrap_or(u128::MAX).min(1 << 64);
        Ok(CidrSet { base, v6, host_bits: bits - mask, count })
    }

    pub fn len(&self) -> u128 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The subnet at `i` (`10.244.3.0/24`).
    pub fn subnet(&self, i: u128) -> String {
        let addr = self.base + (i << self.host_bits);
        let bits = if self.v6 { 128 } else { 32 };
        let ip: IpAddr = if self.v6 { IpAddr::V6(addr.into()) } else { IpAddr::V4((addr as u32).into()) };
        format!("{ip}/{}", bits - self.host_bits)
    }

    /// The index of a subnet of this set, if it is one.
    pub fn index_of(&self, cidr: &str) -> Option<u128> {
        let net: IpNetwork = cidr.parse().ok()?;
        let addr = match net {
            IpNetwork::V4(n) if !self.v6 => u32::from(n.network()) as u128,
            IpNetwork::V6(n) if self.v6 => u128::from(n.network()),
            _ => return None,
        };
        let i = addr.checked_sub(self.base)? >> self.host_bits;
        (i < self.count && self.subnet(i) == format!("{}/{}", net.network(), net.prefix())).then_some(i)
    }
}

/// Which subnet each node holds, and where the next search starts.
#[derive(Default)]
pub struct Allocations {
    by_node: HashMap<String, u128>,
    next: u128,
}

impl Allocations {
    pub fn occupy(&mut self, node: &str, i: u128) {
        self.by_node.insert(node.to_string(), i);
    }

    pub fn release(&mut self, node: &str) -> Option<u128> {
        self.by_node.remove(node)
    }

    /// The next free subnet after the last one handed out (wrapping), for `node`.
    pub fn allocate(&mut self, set: &CidrSet, node: &str) -> Option<u128> {
        let used: std::collections::HashSet<u128> = self.by_node.values().copied().collect();
        let n = set.len();
        let limit = n.min(1 << 20);
        for k in 0..limit {
            let i = (self.next + k) % n;
            if !used.contains(&i) {
                self.next = (i + 1) % n;
                self.by_node.insert(node.to_string(), i);
                return Some(i);
            }
        }
        None
    }
}

fn pod_cidr(node: &Value) -> Option<&str> {
    node.pointer("/spec/podCIDR").and_then(Value::as_str).filter(|c| !c.is_empty())
}

struct NodeIpam {
    ctx: Arc<Context>,
    nodes: Informer,
    set: CidrSet,
    state: Mutex<Allocations>,
    recorder: Recorder,
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    if !ctx.options.allocate_node_cidrs {
        tracing::info!("nodeipam: --allocate-node-cidrs is off");
        return;
    }
    let Some(cluster) = ctx.options.cluster_cidr.clone() else {
        tracing::warn!("nodeipam: --allocate-node-cidrs without --cluster-cidr; not allocating");
        return;
    };
    let first = cluster.split(',').next().unwrap_or_default().to_string();
    let set = match CidrSet::new(&first, ctx.options.node_cidr_mask_size) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "nodeipam");
            return;
        }
    };
    let nodes = ctx.informer("", "v1", "nodes");
    let this = Arc::new(NodeIpam {
        recorder: ctx.recorder("cidrAllocator"),
        ctx,
        nodes: nodes.clone(),
        set,
        state: Mutex::default(),
    });
    let store = nodes.clone();
    let c = Controller::new(runtime::controller::Config { workers: 1, ..Default::default() }).watches(
        &nodes,
        move |n: &Notification| match n {
            // A freed CIDR may be what a waiting node needs.
            Notification::Deleted(_) => {
                let mut keys = vec![n.key()];
                keys.extend(store.store().list_by(|o| pod_cidr(o).is_none()).iter().map(|o| runtime::object_key(o)));
                keys
            }
            _ => vec![n.key()],
        },
    );
    // Before anything is handed out, every CIDR nodes already hold is marked used.
    if nodes.wait_synced().await {
        let mut st = this.state.lock().unwrap_or_else(|e| e.into_inner());
        for n in nodes.store().list() {
            if let Some(i) = pod_cidr(&n).and_then(|c| this.set.index_of(c)) {
                st.occupy(runtime::name(&n), i);
            }
        }
    }
    c.run(
        move |name: String| {
            let this = this.clone();
            async move { this.reconcile(&name).await }
        },
        stopped(stop),
    )
    .await;
}

impl NodeIpam {
    async fn reconcile(&self, name: &str) -> Result<Action, BoxError> {
        let Some(node) = self.nodes.store().get("", name) else {
            self.state.lock().unwrap_or_else(|e| e.into_inner()).release(name);
            return Ok(Action::Done);
        };
        if let Some(cidr) = pod_cidr(&node) {
            if let Some(i) = self.set.index_of(cidr) {
                self.state.lock().unwrap_or_else(|e| e.into_inner()).occupy(name, i);
            }
            return Ok(Action::Done);
        }
        let (index, fresh) = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match st.by_node.get(name) {
                Some(i) => (Some(*i), false),
                None => (st.allocate(&self.set, name), true),
            }
        };
        let Some(i) = index else {
            let msg = format!("Node {name} status is now: CIDRNotAvailable");
            self.recorder.record(&node, EventType::Normal, "CIDRNotAvailable", &msg);
            return Ok(Action::Done);
        };
        let cidr = self.set.subnet(i);
        let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        match self.ctx.api("", "v1", "nodes").patch(name, PatchType::Merge, &patch).await {
            Ok(_) => {
                tracing::info!(node = name, %cidr, "allocated the pod CIDR");
                Ok(Action::Done)
            }
            Err(e) => {
                if fresh {
                    self.state.lock().unwrap_or_else(|e| e.into_inner()).release(name);
                }
                if e.code() == Some(404) {
                    return Ok(Action::Done);
                }
                let msg = format!("Node {name} status is now: CIDRAssignmentFailed");
                self.recorder.record(&node, EventType::Normal, "CIDRAssignmentFailed", &msg);
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_of_the_cluster_cidr() {
        let s = CidrSet::new("10.244.0.0/16", 24).unwrap();
        assert_eq!(s.len(), 256);
        assert_eq!(s.subnet(0), "10.244.0.0/24");
        assert_eq!(s.subnet(255), "10.244.255.0/24");
        assert_eq!(s.index_of("10.244.7.0/24"), Some(7));
        assert_eq!(s.index_of("10.245.0.0/24"), None);
        assert_eq!(s.index_of("10.244.7.0/25"), None);
        let v6 = CidrSet::new("fd00::/48", 64).unwrap();
        assert_eq!(v6.subnet(1), "fd00:0:0:1::/64");
        assert!(CidrSet::new("10.0.0.0/24", 16).is_err());
    }

    #[test]
    fn allocation_is_round_robin_and_reuses_released_subnets() {
        let s = CidrSet::new("10.0.0.0/23", 24).unwrap();
        let mut a = Allocations::default();
        assert_eq!(a.allocate(&s, "a"), Some(0));
        assert_eq!(a.allocate(&s, "b"), Some(1));
        assert_eq!(a.allocate(&s, "c"), None);
        a.release("a");
        assert_eq!(a.allocate(&s, "c"), Some(0));
        let mut a = Allocations::default();
        a.occupy("old", 0);
        assert_eq!(a.allocate(&s, "new"), Some(1));
    }
}
