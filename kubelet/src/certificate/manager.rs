//! Certificate rotation (client-go's certificate manager): a pair is renewed at a jittered 70-90% of its
//! lifetime — at once when there is none or it does not match the template (common name, organizations, DNS
//! names, IPs) — by a new ECDSA P-256 key and a CSR; the issued certificate is stored and handed on. Failed
//! attempts back off from 2 s (×2, five times), then retry every 32 s.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use client::Client;
use jiff::{SignedDuration, Timestamp};

use super::store::{FileStore, Pair};

/// How long a rotation waits for its CSR to be issued.
const CERTIFICATE_WAIT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// What the certificates must say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Template {
    /// Whether a certificate has the common name and at least the names and organizations asked for.
    pub fn satisfied_by(&self, p: &Pair) -> bool {
        p.common_name == self.common_name
            && self.dns_names.iter().all(|d| p.dns_names.contains(d))
            && self.ips.iter().all(|i| p.ips.contains(i))
            && self.organizations.iter().all(|o| p.organizations.contains(o))
    }

    /// A PEM certificate request for `key`.
    pub fn csr_pem(&self, key: &rcgen::KeyPair) -> Result<String, String> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for o in &self.organizations {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, o.as_str());
        }
        params.distinguished_name.push(rcgen::DnType::CommonName, self.common_name.as_str());
        for d in &self.dns_names {
            let name = rcgen::string::Ia5String::try_from(d.as_str()).map_err(|e| e.to_string())?;
            params.subject_alt_names.push(rcgen::SanType::DnsName(name));
        }
        for ip in &self.ips {
            params.subject_alt_names.push(rcgen::SanType::IpAddress(*ip));
        }
        params
            .serialize_request(key)
            .and_then(|r| r.pem())
            .map_err(|e| format!("unable to create a csr from the private key: {e}"))
    }
}

/// A random number in [0, 1).
pub(crate) fn unit_random() -> f64 {
    (uuid::Uuid::new_v4().as_u128() % 1_000_000_007) as f64 / 1_000_000_007.0
}

/// When to rotate a pair of this lifetime, after its start: 70-90% of it (upstream's `jitteryDuration`).
pub fn jittery(total: SignedDuration) -> SignedDuration {
    total.mul_f64(0.7 + 0.2 * unit_random())
}

/// Keeps one certificate renewed.
pub struct Manager {
    /// For the logs: `kubelet-client`, `kubelet-server`.
    pub name: &'static str,
    client: Client,
    store: FileStore,
    template: Template,
    signer: &'static str,
    usages: Vec<&'static str>,
    current: RwLock<Option<Pair>>,
    force: AtomicBool,
    on_update: Box<dyn Fn(&Pair) + Send + Sync>,
}

impl Manager {
    /// A manager starting from the store's pair (or `initial`, written to the store, when the store has no valid
    /// one: it is then rotated at once, as upstream's bootstrap certificate); `on_update` gets every new pair.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &'static str,
        client: Client,
        store: FileStore,
        template: Template,
        signer: &'static str,
        usages: Vec<&'static str>,
        initial: Option<(&[u8], &[u8])>,
        on_update: Box<dyn Fn(&Pair) + Send + Sync>,
    ) -> Result<Arc<Self>, String> {
        let now = Timestamp::now();
        let mut force = false;
        let current = match store.current()? {
            Some(p) if p.not_after > now => Some(p),
            _ => match initial {
                Some((cert, key)) => {
                    force = true;
                    match store.update(cert, key) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            tracing::error!(error = %e, "Unable to set the cert/key pair to the bootstrap certificate");
                            Some(Pair::parse(cert, key)?)
                        }
                    }
                }
                None => None,
            },
        };
        Ok(Arc::new(Manager {
            name,
            client,
            store,
            template,
            signer,
            usages,
            current: RwLock::new(current),
            force: AtomicBool::new(force),
            on_update,
        }))
    }

    /// The current pair.
    pub fn current(&self) -> Option<Pair> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// When to rotate next: now when forced, without a pair or with one that misses the template; else the
    /// jittered deadline.
    pub fn next_rotation_deadline(&self) -> Timestamp {
        if self.force.swap(false, Ordering::SeqCst) {
            return Timestamp::now();
        }
        match self.current() {
            Some(p) if self.template.satisfied_by(&p) => {
                let deadline = p.not_before + jittery(p.not_after.duration_since(p.not_before));
                tracing::info!(manager = self.name, expiration = %p.not_after, deadline = %deadline, "Certificate rotation deadline determined");
                deadline
            }
            _ => Timestamp::now(),
        }
    }

    /// One rotation: a new key, a CSR, the issued certificate stored and handed on. Ok(false) when it did not
    /// succeed (logged), as upstream's `rotateCerts`.
    pub async fn rotate(&self) -> bool {
        tracing::info!(manager = self.name, "Rotating certificates");
        let key = match rcgen::KeyPair::generate() {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "Unable to generate a certificate signing request");
                return false;
            }
        };
        let csr = match self.template.csr_pem(&key) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "Unable to generate a certificate signing request");
                return false;
            }
        };
        let (name, uid) =
            match super::csr::request_certificate(&self.client, &csr, None, self.signer, &self.usages, &key).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "Failed while requesting a signed certificate from the control plane");
                    return false;
                }
            };
        let cert = match super::csr::wait_for_certificate(&self.client, &name, &uid, CERTIFICATE_WAIT_TIMEOUT).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, csr = %name, "Certificate request was not signed");
                return false;
            }
        };
        let pair = match self.store.update(&cert, key.serialize_pem().as_bytes()) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "Unable to store the new cert/key pair");
                return false;
            }
        };
        (self.on_update)(&pair);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(pair);
        true
    }

    /// Rotates at every deadline until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let wait = Timestamp::now().duration_until(self.next_rotation_deadline());
            if wait.is_positive() {
                tracing::info!(manager = self.name, sleep = ?wait, "Waiting for next certificate rotation");
                let sleep = tokio::time::sleep(wait.unsigned_abs());
                tokio::select! {
                    _ = sleep => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            let mut delay = Duration::from_secs(2);
            let mut attempts = 0;
            while !self.rotate().await {
                attempts += 1;
                let pause =
                    if attempts < 5 { delay.mul_f64(1.0 + 0.1 * unit_random()) } else { Duration::from_secs(32) };
                if attempts == 5 {
                    tracing::error!(manager = self.name, "Reached backoff limit, still unable to rotate certs");
                }
                delay *= 2;
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}
