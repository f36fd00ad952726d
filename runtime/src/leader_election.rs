//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics (tools/leaderelection):
//!
//! - a candidate acquires the lease when it does not exist, has no holder, or has expired (`renewTime +
//!   leaseDurationSeconds` is past); it retries every retry period (jittered);
//! - the leader renews every retry period; if it cannot renew within the renew deadline it stops leading (the
//!   renew deadline is shorter than the lease duration, so it stops before anyone else may take over);
//! - every write is a replace with the resourceVersion read, so two candidates never both win;
//! - on shutdown the leader releases the lease (empty holderIdentity, 1 s duration), as `ReleaseOnCancel`, so
//!   a successor takes over within one retry period instead of waiting for expiry.
//!
//! Expiry is judged on the lease's `renewTime`; when a lease has none, on the local time the current record was
//! first observed (client-go's rule).

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use client::{Api, Client};
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backoff::jitter;

/// Timing of an election. The defaults are upstream's (kube-controller-manager, kube-scheduler).
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a lease is valid after its last renewal (whole seconds in the Lease).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire, and the leader renews.
    pub retry_period: Duration,
    /// Release the lease when leading stops because of shutdown or because the work finished.
    pub release_on_cancel: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid leader election config: {0}")]
    Config(String),
    #[error(transparent)]
    Client(#[from] client::Error),
}

/// Why [`LeaderElector::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Shutdown completed (before or while leading).
    Shutdown,
    /// The lease could not be renewed within the renew deadline.
    LostLeadership,
    /// The work future passed to `run` finished.
    Finished,
}

/// client-go's `LeaderElectionRecord`, read from and written to the Lease's spec.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    pub holder_identity: String,
    pub lease_duration_seconds: i64,
    pub acquire_time: Option<Timestamp>,
    pub renew_time: Option<Timestamp>,
    pub lease_transitions: i64,
}

/// A MicroTime as the API writes it: `2006-01-02T15:04:05.000000Z`.
pub fn micro_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl Record {
    pub fn from_lease(lease: &Value) -> Self {
        let spec = lease.get("spec").unwrap_or(&Value::Null);
        let time = |f: &str| spec.get(f).and_then(Value::as_str).and_then(|s| s.parse::<Timestamp>().ok());
        Record {
            holder_identity: spec.get("holderIdentity").and_then(Value::as_str).unwrap_or_default().to_string(),
            lease_duration_seconds: spec.get("leaseDurationSeconds").and_then(Value::as_i64).unwrap_or_default(),
            acquire_time: time("acquireTime"),
            renew_time: time("renewTime"),
            lease_transitions: spec.get("leaseTransitions").and_then(Value::as_i64).unwrap_or_default(),
        }
    }

    /// The Lease spec of this record.
    pub fn to_spec(&self) -> Value {
        let mut spec = json!({
            "holderIdentity": self.holder_identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.lease_transitions,
        });
        if let Some(t) = self.acquire_time {
            spec["acquireTime"] = json!(micro_time(t));
        }
        if let Some(t) = self.renew_time {
            spec["renewTime"] = json!(micro_time(t));
        }
        spec
    }
}

#[derive(Default)]
struct Observed {
    /// The lease as last read or written.
    lease: Option<Value>,
    record: Record,
    /// When `record` was first seen (local clock).
    time: Option<Instant>,
}

/// One candidate in an election for one Lease.
pub struct LeaderElector {
    api: Api,
    namespace: String,
    name: String,
    identity: String,
    config: Config,
    observed: Mutex<Observed>,
    leader: watch::Sender<bool>,
}

impl LeaderElector {
    /// A candidate `identity` for the Lease `namespace/name` (upstream components use `kube-system/<component>`).
    pub fn new(client: &Client, namespace: &str, name: &str, identity: &str, config: Config) -> Result<Self, Error> {
        if identity.is_empty() {
            return Err(Error::Config("identity must not be empty".into()));
        }
        if config.lease_duration <= config.renew_deadline {
            return Err(Error::Config("lease duration must be greater than the renew deadline".into()));
        }
        if config.renew_deadline <= config.retry_period.mul_f64(1.2) {
            return Err(Error::Config("renew deadline must be greater than 1.2 times the retry period".into()));
        }
        if config.lease_duration < Duration::from_secs(1) || config.retry_period.is_zero() {
            return Err(Error::Config("lease duration must be at least 1s and the retry period positive".into()));
        }
        let api = client.api("coordination.k8s.io", "v1", "leases")?.namespaced(namespace);
        Ok(LeaderElector {
            api,
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            config,
            observed: Mutex::default(),
            leader: watch::Sender::new(false),
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether this candidate leads now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Follows whether this candidate leads.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// The holder of the lease as last observed ("" when none).
    pub fn observed_leader(&self) -> String {
        self.observed().record.holder_identity.clone()
    }

    fn observed(&self) -> MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lease_seconds(&self) -> i64 {
        i64::try_from(self.config.lease_duration.as_secs()).unwrap_or(i64::MAX).max(1)
    }

    /// Records a lease read or written.
    fn observe(&self, lease: Value) {
        let record = Record::from_lease(&lease);
        let mut o = self.observed();
        if o.record != record || o.time.is_none() {
            o.record = record;
            o.time = Some(Instant::now());
        }
        o.lease = Some(lease);
    }

    fn lease_body(&self, base: Option<&Value>, record: &Record) -> Value {
        let mut lease = base.cloned().unwrap_or_else(|| {
            json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
            })
        });
        lease["spec"] = record.to_spec();
        lease
    }

    /// Whether a record held by someone else still binds us.
    fn held_by_other(&self, record: &Record, observed_at: Option<Instant>) -> bool {
        if record.holder_identity.is_empty() || record.holder_identity == self.identity {
            return false;
        }
        let duration = Duration::from_secs(u64::try_from(record.lease_duration_seconds).unwrap_or(0));
        match record.renew_time {
            Some(renewed) => {
                let expires =
                    renewed.as_millisecond().saturating_add(duration.as_millis().try_into().unwrap_or(i64::MAX));
                expires > Timestamp::now().as_millisecond()
            }
            None => observed_at.is_some_and(|t| t + duration > Instant::now()),
        }
    }

    /// One attempt to acquire or renew (client-go's `tryAcquireOrRenew`).
    async fn try_acquire_or_renew(&self) -> bool {
        let now = Timestamp::now();
        let mut desired = Record {
            holder_identity: self.identity.clone(),
            lease_duration_seconds: self.lease_seconds(),
            acquire_time: Some(now),
            renew_time: Some(now),
            lease_transitions: 0,
        };
        // Fast path: the leader renews the lease it last wrote without reading it first.
        let cached = {
            let o = self.observed();
            (self.is_leader() && o.record.holder_identity == self.identity)
                .then(|| o.lease.clone().map(|l| (l, o.record.clone())))
                .flatten()
        };
        if let Some((lease, old)) = cached {
            let mut r = desired.clone();
            r.acquire_time = old.acquire_time;
            r.lease_transitions = old.lease_transitions;
            match self.api.replace(&self.name, &self.lease_body(Some(&lease), &r)).await {
                Ok(new) => {
                    self.observe(new);
                    return true;
                }
                Err(e) => tracing::debug!(lease = %self.name, error = %e, "fast lease renewal failed; rereading"),
            }
        }
        let lease = match self.api.get(&self.name).await {
            Ok(l) => l,
            Err(e) if e.code() == Some(404) => {
                return match self.api.create(&self.lease_body(None, &desired)).await {
                    Ok(new) => {
                        self.observe(new);
                        true
                    }
                    Err(e) => {
                        tracing::debug!(lease = %self.name, error = %e, "creating the lease failed");
                        false
                    }
                };
            }
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "reading the lease failed");
                return false;
            }
        };
        self.observe(lease.clone());
        let (old, observed_at) = {
            let o = self.observed();
            (o.record.clone(), o.time)
        };
        if self.held_by_other(&old, observed_at) {
            return false;
        }
        if old.holder_identity == self.identity {
            desired.acquire_time = old.acquire_time;
            desired.lease_transitions = old.lease_transitions;
        } else {
            desired.lease_transitions = old.lease_transitions + 1;
        }
        match self.api.replace(&self.name, &self.lease_body(Some(&lease), &desired)).await {
            Ok(new) => {
                self.observe(new);
                true
            }
            Err(e) => {
                tracing::debug!(lease = %self.name, error = %e, "updating the lease failed");
                false
            }
        }
    }

    /// Tries until the lease is ours.
    async fn acquire(&self) {
        loop {
            if self.try_acquire_or_renew().await {
                tracing::info!(lease = %self.name, identity = %self.identity, "acquired the lease");
                return;
            }
            tokio::time::sleep(jitter(self.config.retry_period, 1.2)).await;
        }
    }

    /// Renews every retry period; returns when a renewal did not succeed within the renew deadline.
    async fn keep_renewing(&self) {
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let renewed = tokio::time::timeout(self.config.renew_deadline, async {
                loop {
                    if self.try_acquire_or_renew().await {
                        return;
                    }
                    tokio::time::sleep(self.config.retry_period).await;
                }
            })
            .await;
            if renewed.is_err() {
                tracing::warn!(lease = %self.name, identity = %self.identity, "failed to renew the lease in time");
                return;
            }
        }
    }

    /// Gives the lease up (client-go's `release`): empty holder, 1 s duration, transitions kept.
    pub async fn release(&self) -> bool {
        let (lease, old) = {
            let o = self.observed();
            if o.record.holder_identity != self.identity {
                return true;
            }
            match &o.lease {
                Some(l) => (l.clone(), o.record.clone()),
                None => return true,
            }
        };
        let now = Timestamp::now();
        let record = Record {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(now),
            renew_time: Some(now),
            lease_transitions: old.lease_transitions,
        };
        match self.api.replace(&self.name, &self.lease_body(Some(&lease), &record)).await {
            Ok(new) => {
                self.observe(new);
                tracing::info!(lease = %self.name, identity = %self.identity, "released the lease");
                true
            }
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "releasing the lease failed");
                false
            }
        }
    }

    /// Campaigns until leading, then polls `lead` while leading and renewing. Returns when `shutdown` completes,
    /// leadership is lost (the lease could not be renewed in time; `lead` is dropped then) or `lead` finishes.
    /// Releases the lease on shutdown and when `lead` finishes if `config.release_on_cancel`.
    pub async fn run(&self, lead: impl Future<Output = ()>, shutdown: impl Future<Output = ()>) -> Outcome {
        tokio::pin!(lead);
        tokio::pin!(shutdown);
        tokio::select! {
            _ = self.acquire() => {}
            _ = &mut shutdown => return Outcome::Shutdown,
        }
        self.leader.send_replace(true);
        let outcome = tokio::select! {
            _ = &mut lead => Outcome::Finished,
            _ = &mut shutdown => Outcome::Shutdown,
            _ = self.keep_renewing() => Outcome::LostLeadership,
        };
        self.leader.send_replace(false);
        if outcome != Outcome::LostLeadership && self.config.release_on_cancel {
            self.release().await;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_lease_specs() {
        let t: Timestamp = "2024-05-01T10:00:00.123456Z".parse().unwrap();
        let r = Record {
            holder_identity: "a".into(),
            lease_duration_seconds: 15,
            acquire_time: Some(t),
            renew_time: Some(t),
            lease_transitions: 3,
        };
        let spec = r.to_spec();
        assert_eq!(spec["renewTime"], "2024-05-01T10:00:00.123456Z");
        assert_eq!(Record::from_lease(&json!({"spec": spec})), r);
        assert_eq!(Record::from_lease(&json!({})), Record::default());
        let whole: Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
        assert_eq!(micro_time(whole), "2024-05-01T10:00:00.000000Z");
    }
}
