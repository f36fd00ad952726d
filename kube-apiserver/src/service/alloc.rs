//! Upstream's `Allocators` of the Service storage (`pkg/registry/core/service/storage/alloc.go`): the IP family
//! fields a Service gets (`initIPFamilyFields`), the ClusterIPs, node ports and health check node port it takes on
//! create, what an update takes or frees as the type or ports change (`allocateUpdate`: ExternalName to a
//! ClusterIP type allocates, the other way frees; leaving NodePort/LoadBalancer frees the node ports), and what a
//! deleted Service gives back. Everything happens in a [`Transaction`]: the registry commits it once the write is
//! stored (freeing what the old object held) or reverts it when anything fails (giving back what it took).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use api_types::{ApiError, Cause};
use serde_json::Value;
use serde_json::json;

use super::util::*;
use crate::ipalloc::{AllocError, IpRange, PortRange};
use crate::storage::Backend;

/// The family of `--service-cluster-ip-range`: the cluster is single-stack IPv4.
pub const DEFAULT_FAMILY: &str = "IPv4";

/// The allocators for Services: the service IP range and the node port range, both kept in storage.
#[derive(Clone)]
pub struct Allocators {
    store: Arc<Backend>,
    ips: IpRange,
    ports: PortRange,
}

/// `[]string{"10.0.0.1"}`: a string list as upstream's field errors print it.
pub fn go_strings(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", items.join(", "))
}

/// An Invalid cause whose value is shown as given (a Go-printed list).
pub fn invalid_shown(field: impl Into<String>, shown: &str, detail: impl AsRef<str>) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.into(),
        message: format!("Invalid value: {shown}: {}", detail.as_ref()),
    }
}

fn invalid(svc: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid("", "Service", name(svc), causes)
}

/// What a create or update took and what it frees. Revert gives back what it took; commit frees what the old
/// object held and the new one no longer does. A dry run takes and frees nothing.
#[must_use = "a transaction must be committed or reverted"]
pub struct Transaction {
    al: Allocators,
    dry_run: bool,
    taken_ips: Vec<Ipv4Addr>,
    taken_ports: Vec<u16>,
    freed_ips: Vec<Ipv4Addr>,
    freed_ports: Vec<u16>,
}

impl Transaction {
    fn new(al: &Allocators, dry_run: bool) -> Self {
        Transaction {
            al: al.clone(),
            dry_run,
            taken_ips: Vec::new(),
            taken_ports: Vec::new(),
            freed_ips: Vec::new(),
            freed_ports: Vec::new(),
        }
    }

    /// The write is stored: free what the old object held.
    pub async fn commit(self) {
        if self.dry_run {
            return;
        }
        let store = &self.al.store;
        for ip in &self.freed_ips {
            if !self.taken_ips.contains(ip) {
                self.al.ips.release(store, *ip).await;
            }
        }
        for p in &self.freed_ports {
            if !self.taken_ports.contains(p) {
                self.al.ports.release(store, *p).await;
            }
        }
    }

    /// The write failed: give back what this request took.
    pub async fn revert(self) {
        if self.dry_run {
            return;
        }
        let store = &self.al.store;
        for ip in &self.taken_ips {
            self.al.ips.release(store, *ip).await;
        }
        for p in &self.taken_ports {
            self.al.ports.release(store, *p).await;
        }
    }

    fn free_ip(&mut self, ip: &str) {
        if let Ok(ip) = ip.parse::<Ipv4Addr>()
            && !self.freed_ips.contains(&ip)
        {
            self.freed_ips.push(ip);
        }
    }

    fn free_port(&mut self, port: i64) {
        if let Ok(p) = u16::try_from(port)
            && !self.freed_ports.contains(&p)
        {
            self.freed_ports.push(p);
        }
    }
}

/// A failure of the store is a 503, not the client's fault.
fn unavailable(e: &AllocError) -> Option<ApiError> {
    match e {
        AllocError::Storage(m) => Some(ApiError::unavailable(m.clone())),
        _ => None,
    }
}

/// Upstream's `isMatchingPreferDualStackClusterIPFields`: an update of a PreferDualStack Service that changes
/// neither its type, ClusterIPs nor families needs no allocation work.
fn is_matching_prefer_dual_stack(new: &Value, old: Option<&Value>) -> bool {
    let Some(old) = old else { return false };
    let Some(policy) = ip_family_policy(new) else { return false };
    service_type(old) == service_type(new)
        && matches!(service_type(new), "ClusterIP" | "NodePort" | "LoadBalancer")
        && policy == "PreferDualStack"
        && ip_family_policy(old).is_none_or(|p| p == "PreferDualStack")
        && cluster_ips(old) == cluster_ips(new)
        && ip_families(old) == ip_families(new)
}

fn family_of(ip: &str) -> &'static str {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => "IPv4",
        Ok(std::net::IpAddr::V6(_)) => "IPv6",
        Err(_) => "unknown",
    }
}

impl Allocators {
    pub fn new(store: Arc<Backend>, ip_range: &str, port_range: &str) -> Result<Self, String> {
        Ok(Allocators { store, ips: IpRange::new(ip_range)?, ports: PortRange::new(port_range)? })
    }

    /// The families this cluster serves (one: single-stack).
    fn configured(&self, family: &str) -> bool {
        family == DEFAULT_FAMILY
    }

    const CONFIGURED_FAMILIES: usize = 1;

    /// Allocation for a new Service: its family fields, ClusterIPs, node ports and health check node port.
    pub async fn allocate_create(&self, svc: &mut Value, dry_run: bool) -> Result<Transaction, ApiError> {
        self.init_ip_family_fields(svc, None)?;
        let mut txn = Transaction::new(self, dry_run);
        let done = async {
            self.alloc_cluster_ips(svc, &mut txn).await?;
            self.init_node_ports(svc, &mut txn).await?;
            if needs_health_check(svc) {
                self.alloc_health_check_node_port(svc, &mut txn).await?;
            }
            Ok(())
        }
        .await;
        match done {
            Ok(()) => Ok(txn),
            Err(e) => {
                txn.revert().await;
                Err(e)
            }
        }
    }

    /// Allocation for an update: what the new type and ports need that the old object did not hold, and what it
    /// no longer needs (freed on commit).
    pub async fn allocate_update(&self, new: &mut Value, old: &Value, dry_run: bool) -> Result<Transaction, ApiError> {
        self.init_ip_family_fields(new, Some(old))?;
        let mut txn = Transaction::new(self, dry_run);
        let done = async {
            self.update_cluster_ips(new, old, &mut txn).await?;
            self.update_node_ports(new, old, &mut txn).await?;
            Ok(())
        }
        .await;
        match done {
            Ok(()) => Ok(txn),
            Err(e) => {
                txn.revert().await;
                Err(e)
            }
        }
    }

    /// Gives back everything a deleted Service held (upstream's `releaseAllocatedResources`).
    pub async fn release_allocated(&self, svc: &Value) {
        let store = &self.store;
        if needs_cluster_ip(svc) && !is_headless(svc) {
            let mut ips = cluster_ips(svc);
            if ips.is_empty() && !cluster_ip(svc).is_empty() {
                ips.push(cluster_ip(svc).to_string());
            }
            for ip in ips.iter().filter_map(|ip| ip.parse::<Ipv4Addr>().ok()) {
                self.ips.release(store, ip).await;
            }
        }
        for p in node_ports(svc).into_iter().filter_map(|p| u16::try_from(p).ok()) {
            self.ports.release(store, p).await;
        }
        if needs_health_check(svc)
            && let Ok(p) = u16::try_from(health_check_node_port(svc))
            && p > 0
        {
            self.ports.release(store, p).await;
        }
    }

    /// Upstream's `initIPFamilyFields`: `ipFamilyPolicy` (the old one on update, RequireDualStack for a headless
    /// Service without selector, else SingleStack) and `ipFamilies` (from the ClusterIPs, else the cluster's),
    /// refusing families and policies this single-stack cluster cannot serve.
    fn init_ip_family_fields(&self, svc: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
        if !needs_cluster_ip(svc) || is_matching_prefer_dual_stack(svc, old) {
            return Ok(());
        }
        if ip_family_policy(svc).is_none() {
            let policy = match old.and_then(ip_family_policy) {
                Some(p) => p.to_string(),
                None if is_headless(svc) && !has_selector(svc) => "RequireDualStack".into(),
                None => "SingleStack".into(),
            };
            set_ip_family_policy(svc, Some(&policy));
        }
        // The loose pre-validation upstream runs here, so that what follows sees sane input.
        let pre = super::validation::cluster_ips_related_fields(svc);
        if !pre.is_empty() {
            return Err(invalid(svc, pre));
        }
        let policy = ip_family_policy(svc).unwrap_or_default().to_string();
        let single = policy == "SingleStack";
        let policy_value = json!(policy);
        let mut causes = Vec::new();
        if let Some(old) = old {
            let (mut ips, mut families) = (cluster_ips(svc), ip_families(svc));
            if single {
                // Setting SingleStack while keeping both IPs or families is the intent to drop the second.
                if ips == cluster_ips(old) && ips.len() > 1 {
                    ips.truncate(1);
                    set_cluster_ips(svc, Some(&ips));
                }
                if families == ip_families(old) && families.len() > 1 {
                    families.truncate(1);
                    set_ip_families(svc, Some(&families));
                }
            } else {
                if !ips.is_empty() && ips.len() < cluster_ips(old).len() {
                    causes.push(Cause::invalid(
                        "spec.ipFamilyPolicy",
                        &policy_value,
                        "must be 'SingleStack' to release the secondary cluster IP",
                    ));
                }
                if !families.is_empty() && families.len() < ip_families(old).len() {
                    causes.push(Cause::invalid(
                        "spec.ipFamilyPolicy",
                        &policy_value,
                        "must be 'SingleStack' to release the secondary IP family",
                    ));
                }
            }
        }
        let ips = cluster_ips(svc);
        let mut families = ip_families(svc);
        if single {
            if ips.len() == 2 {
                causes.push(Cause::invalid(
                    "spec.ipFamilyPolicy",
                    &policy_value,
                    "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
                ));
            }
            if families.len() == 2 {
                causes.push(Cause::invalid(
                    "spec.ipFamilyPolicy",
                    &policy_value,
                    "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
                ));
            }
        }
        // Families follow from the ClusterIPs asked for.
        for (i, ip) in ips.iter().enumerate() {
            if ip == "None" {
                break;
            }
            let family = family_of(ip);
            if i >= families.len() {
                if self.configured(family) {
                    families.push(family.to_string());
                } else {
                    causes.push(invalid_shown(
                        format!("spec.clusterIPs[{i}]"),
                        &go_strings(&ips),
                        format!("{family} is not configured on this cluster"),
                    ));
                }
            }
        }
        if !causes.is_empty() {
            return Err(invalid(svc, causes));
        }
        if is_headless(svc) && !has_selector(svc) {
            // Headless without selector may hold both families, even on a single-stack cluster.
            if families.is_empty() {
                families.push(DEFAULT_FAMILY.into());
            }
            if families.len() < 2 && !single {
                families.push(if families[0] == "IPv4" { "IPv6" } else { "IPv4" }.into());
            }
            set_ip_families(svc, Some(&families));
            return Ok(());
        }
        if policy == "RequireDualStack" && Self::CONFIGURED_FAMILIES < 2 {
            causes.push(Cause::invalid(
                "spec.ipFamilyPolicy",
                &policy_value,
                "this cluster is not configured for dual-stack services",
            ));
        }
        for (i, family) in families.iter().enumerate() {
            if !self.configured(family) {
                causes.push(Cause::invalid(
                    format!("spec.ipFamilies[{i}]"),
                    &json!(family),
                    "not configured on this cluster",
                ));
            }
        }
        if !causes.is_empty() {
            return Err(invalid(svc, causes));
        }
        if families.is_empty() {
            families.push(DEFAULT_FAMILY.into());
        }
        set_ip_families(svc, Some(&families));
        Ok(())
    }

    /// Upstream's `allocClusterIPs`: one IP per family, the one asked for or a free one.
    async fn alloc_cluster_ips(&self, svc: &mut Value, txn: &mut Transaction) -> Result<(), ApiError> {
        if !needs_cluster_ip(svc) || is_headless(svc) {
            return Ok(());
        }
        let families = ip_families(svc);
        let mut ips = cluster_ips(svc);
        ips.resize(ips.len().max(families.len()), String::new());
        let holder = holder(svc);
        for i in 0..families.len() {
            let wanted = ips[i].clone();
            let ip = if wanted.is_empty() {
                self.ips.allocate_next(&self.store, &holder, txn.dry_run).await.map_err(|e| {
                    unavailable(&e)
                        .unwrap_or_else(|| ApiError::internal(format!("failed to allocate a serviceIP: {e}")))
                })?
            } else {
                let refuse =
                    |detail: String| invalid(svc, vec![invalid_shown("spec.clusterIPs", &go_strings(&ips), detail)]);
                let ip: Ipv4Addr = wanted
                    .parse()
                    .map_err(|_| refuse(format!("failed to allocate IP {wanted}: not a valid IPv4 address")))?;
                self.ips.allocate(&self.store, ip, &holder, txn.dry_run).await.map_err(|e| {
                    unavailable(&e).unwrap_or_else(|| refuse(format!("failed to allocate IP {wanted}: {e}")))
                })?;
                ip
            };
            if !txn.dry_run {
                txn.taken_ips.push(ip);
            }
            ips[i] = ip.to_string();
        }
        if let Some(first) = ips.first().cloned() {
            set_cluster_ip(svc, &first);
        }
        set_cluster_ips(svc, Some(&ips));
        Ok(())
    }

    /// Takes one node port for this request (in a dry run: checks it is free and not taken twice).
    async fn take_port(&self, svc: &Value, port: i64, txn: &mut Transaction) -> Result<(), AllocError> {
        if txn.dry_run && u16::try_from(port).is_ok_and(|p| txn.taken_ports.contains(&p)) {
            return Err(AllocError::PortAllocated);
        }
        let p = self.ports.allocate(&self.store, port, &holder(svc), txn.dry_run).await?;
        txn.taken_ports.push(p);
        Ok(())
    }

    async fn next_port(&self, svc: &Value, txn: &mut Transaction) -> Result<u16, AllocError> {
        let p = self.ports.allocate_next(&self.store, &holder(svc), txn.dry_run).await?;
        txn.taken_ports.push(p);
        Ok(p)
    }

    fn node_port_error(svc: &Value, i: usize, port: i64, e: AllocError) -> ApiError {
        unavailable(&e).unwrap_or_else(|| {
            invalid(svc, vec![Cause::invalid(format!("spec.ports[{i}].nodePort"), &json!(port), e.to_string())])
        })
    }

    fn next_port_error(e: AllocError) -> ApiError {
        unavailable(&e).unwrap_or_else(|| ApiError::internal(format!("failed to allocate a nodePort: {e}")))
    }

    /// Upstream's `initNodePorts`: ports asked for are taken; the others get a free one, shared by the ports of
    /// one port number (TCP and UDP on 53 get the same node port).
    async fn init_node_ports(&self, svc: &mut Value, txn: &mut Transaction) -> Result<(), ApiError> {
        if !needs_node_port(svc) {
            return Ok(());
        }
        let allocate = should_allocate_node_ports(svc);
        let mut by_port: HashMap<i64, i64> = HashMap::new();
        for i in 0..ports(svc).len() {
            let asked = node_port(svc, i);
            if asked == 0 && !allocate {
                continue;
            }
            let number = port_number(svc, i);
            match by_port.get(&number).copied() {
                None => {
                    // The first port of this number: a node port asked for by any port of the number, or a new one.
                    let requested = (0..ports(svc).len())
                        .find(|j| port_number(svc, *j) == number && node_port(svc, *j) != 0)
                        .map(|j| node_port(svc, j))
                        .unwrap_or(0);
                    let got = if requested != 0 {
                        self.take_port(svc, requested, txn)
                            .await
                            .map_err(|e| Self::node_port_error(svc, i, requested, e))?;
                        requested
                    } else {
                        i64::from(self.next_port(svc, txn).await.map_err(Self::next_port_error)?)
                    };
                    set_node_port(svc, i, got);
                    by_port.insert(number, got);
                }
                Some(shared) if asked == 0 => set_node_port(svc, i, shared),
                Some(shared) if asked != shared => {
                    self.take_port(svc, asked, txn).await.map_err(|e| Self::node_port_error(svc, i, asked, e))?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Upstream's `allocHealthCheckNodePort`: the one asked for, or a free one.
    async fn alloc_health_check_node_port(&self, svc: &mut Value, txn: &mut Transaction) -> Result<(), ApiError> {
        let asked = health_check_node_port(svc);
        if asked != 0 {
            return self.take_port(svc, asked, txn).await.map_err(|e| {
                unavailable(&e).unwrap_or_else(|| {
                    ApiError::internal(format!("failed to allocate requested HealthCheck NodePort {asked}: {e}"))
                })
            });
        }
        let p = self.next_port(svc, txn).await.map_err(|e| {
            unavailable(&e)
                .unwrap_or_else(|| ApiError::internal(format!("failed to allocate a HealthCheck NodePort 0: {e}")))
        })?;
        set_health_check_node_port(svc, i64::from(p));
        Ok(())
    }

    /// Upstream's `updateClusterIPs`: ExternalName to a ClusterIP type allocates; a ClusterIP type to
    /// ExternalName frees the old IPs on commit. (Adding or dropping a second family cannot happen on a
    /// single-stack cluster: [`Self::init_ip_family_fields`] refuses it.)
    async fn update_cluster_ips(&self, new: &mut Value, old: &Value, txn: &mut Transaction) -> Result<(), ApiError> {
        if is_matching_prefer_dual_stack(new, Some(old)) {
            return Ok(());
        }
        if !needs_cluster_ip(old) && needs_cluster_ip(new) {
            return self.alloc_cluster_ips(new, txn).await;
        }
        if is_headless(old) {
            return Ok(());
        }
        if needs_cluster_ip(old) && !needs_cluster_ip(new) {
            let mut ips = cluster_ips(old);
            if ips.is_empty() {
                ips.push(cluster_ip(old).to_string());
            }
            for ip in ips {
                txn.free_ip(&ip);
            }
        }
        Ok(())
    }

    /// Upstream's `txnUpdateNodePorts`: leaving NodePort/LoadBalancer for ClusterIP or ExternalName frees every
    /// node port; a NodePort/LoadBalancer Service takes the node ports it newly asks for or needs and frees those it
    /// dropped; the health check node port follows `externalTrafficPolicy: Local`.
    async fn update_node_ports(&self, new: &mut Value, old: &Value, txn: &mut Transaction) -> Result<(), ApiError> {
        if needs_node_port(old) && matches!(service_type(new), "ExternalName" | "ClusterIP") {
            for p in node_ports(old) {
                txn.free_port(p);
            }
        }
        if needs_node_port(new) {
            let old_ports = node_ports(old);
            let allocate = should_allocate_node_ports(new);
            let mut seen: Vec<(String, i64)> = Vec::new();
            let mut taken_now: HashSet<i64> = HashSet::new();
            for i in 0..ports(new).len() {
                let asked = node_port(new, i);
                if asked == 0 && !allocate {
                    continue;
                }
                let port = if asked != 0 {
                    if !old_ports.contains(&asked) && !taken_now.contains(&asked) {
                        self.take_port(new, asked, txn).await.map_err(|e| Self::node_port_error(new, i, asked, e))?;
                        taken_now.insert(asked);
                    }
                    asked
                } else {
                    let p = i64::from(self.next_port(new, txn).await.map_err(Self::next_port_error)?);
                    set_node_port(new, i, p);
                    p
                };
                let key = (protocol(new, i).to_string(), port);
                if seen.contains(&key) {
                    // Not a Status upstream either: a plain error, answered as a 500 without reason.
                    return Err(ApiError::new(500, "", format!("duplicate nodePort: {{{} {}}}", key.0, key.1)));
                }
                seen.push(key);
            }
            let now = node_ports(new);
            for p in old_ports.into_iter().filter(|p| !now.contains(p)) {
                txn.free_port(p);
            }
        }
        match (needs_health_check(old), needs_health_check(new)) {
            (false, true) => self.alloc_health_check_node_port(new, txn).await?,
            (true, false) => txn.free_port(health_check_node_port(old)),
            _ => {}
        }
        Ok(())
    }
}
