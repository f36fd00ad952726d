//! The kubelet's TLS certificates (upstream's `pkg/kubelet/certificate` with client-go's `util/certificate`): the
//! client certificate from TLS bootstrap ([`bootstrap`]) and its rotation, the serving certificate of the kubelet
//! API (files, self-signed, or from `kubernetes.io/kubelet-serving` CSRs with `serverTLSBootstrap`), through CSRs
//! ([`csr`]), pairs on disk ([`store`]) and the rotation loop ([`manager`]).

pub mod bootstrap;
pub mod csr;
pub mod manager;
pub mod store;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use client::Client;
use rustls::sign::CertifiedKey;

use crate::BoxError;
use crate::options::Config;
use manager::{Manager, Template};
use store::{FileStore, Pair};

/// The signer of kubelet client certificates.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of kubelet serving certificates.
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The usages of a serving certificate with an ECDSA key (RSA keys would add key encipherment).
pub const SERVING_USAGES: [&str; 2] = ["digital signature", "server auth"];

fn certified_key(p: &Pair) -> Result<Arc<CertifiedKey>, String> {
    let certs =
        rustls_pemfile::certs(&mut p.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let key =
        rustls_pemfile::private_key(&mut p.key_pem.as_bytes()).map_err(|e| e.to_string())?.ok_or("no private key")?;
    CertifiedKey::from_der(certs, key, &rustls::crypto::ring::default_provider())
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The certificate the kubelet API presents; None (no handshake succeeds) until a serving CSR is issued.
#[derive(Debug, Default)]
pub struct ServingCert {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl ServingCert {
    /// Presents `p` from the next handshake on.
    pub fn set(&self, p: &Pair) -> Result<(), String> {
        let key = certified_key(p)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
        Ok(())
    }

    /// Whether there is a certificate to present.
    pub fn ready(&self) -> bool {
        self.current.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

impl rustls::server::ResolvesServerCert for ServingCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The names a serving certificate is for: the node name and its IP (upstream: the node's Hostname and
/// InternalDNS/ExternalDNS addresses as DNS names, InternalIP/ExternalIP addresses as IPs).
fn serving_template(cfg: &Config) -> Template {
    Template {
        common_name: format!("system:node:{}", cfg.node_name),
        organizations: vec!["system:nodes".into()],
        dns_names: vec![cfg.node_name.clone()],
        ips: cfg.node_ip.parse::<IpAddr>().into_iter().collect(),
    }
}

/// The serving certificate: from CSRs with `serverTLSBootstrap` (the returned manager keeps it renewed), else
/// `tlsCertFile`/`tlsPrivateKeyFile`, else a self-signed pair made once in `cert_dir` (`kubelet.crt`,
/// `kubelet.key`) for the node name, localhost and the node IP.
pub fn serving(cfg: &Config, client: Option<&Client>) -> Result<(Arc<ServingCert>, Option<Arc<Manager>>), BoxError> {
    let serving = Arc::new(ServingCert::default());
    if cfg.server_tls_bootstrap {
        let client = client.ok_or("serverTLSBootstrap needs an apiserver")?;
        let store = FileStore::new(
            "kubelet-server",
            &cfg.cert_dir,
            cfg.tls_cert_file.clone(),
            cfg.tls_private_key_file.clone(),
        )?;
        let s2 = serving.clone();
        let m = Manager::new(
            "kubelet-server",
            client.clone(),
            store,
            serving_template(cfg),
            SERVING_SIGNER,
            SERVING_USAGES.to_vec(),
            None,
            Box::new(move |p| {
                if let Err(e) = s2.set(p) {
                    tracing::error!(error = %e, "loading the new serving certificate");
                }
            }),
        )?;
        if let Some(p) = m.current() {
            serving.set(&p)?;
        }
        return Ok((serving, Some(m)));
    }
    let (crt, key) = match (&cfg.tls_cert_file, &cfg.tls_private_key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => self_signed_pair(cfg)?,
    };
    serving.set(&Pair::parse(&std::fs::read(&crt)?, &std::fs::read(&key)?)?)?;
    Ok((serving, None))
}

/// A self-signed serving pair in the certificate directory, made once.
fn self_signed_pair(cfg: &Config) -> Result<(PathBuf, PathBuf), BoxError> {
    let (crt, key) = (cfg.cert_dir.join("kubelet.crt"), cfg.cert_dir.join("kubelet.key"));
    if crt.exists() && key.exists() {
        return Ok((crt, key));
    }
    std::fs::create_dir_all(&cfg.cert_dir)?;
    let names = vec![cfg.node_name.clone(), "localhost".into(), cfg.node_ip.clone()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    std::fs::write(&crt, certified.cert.pem())?;
    std::fs::write(&key, certified.signing_key.serialize_pem())?;
    Ok((crt, key))
}

/// The kubelet's client configuration: TLS bootstrap first with `--bootstrap-kubeconfig`, then `--kubeconfig`
/// (or the inferred one). With `rotateCertificates` and a client certificate, the certificate is the store's
/// current one (the kubeconfig's is copied there and rotated at once when the store has none), presented through
/// a [`client::RotatingCert`]; the returned manager renews it, replacing the client's certificate and closing its
/// connections.
pub async fn client_config(cfg: &Config) -> Result<(client::Config, Option<RotatingClient>), BoxError> {
    if let Some(bootstrap) = &cfg.bootstrap_kubeconfig {
        let kubeconfig = cfg.kubeconfig.as_ref().ok_or("--bootstrap-kubeconfig needs --kubeconfig")?;
        bootstrap::load_client_cert(kubeconfig, bootstrap, &cfg.cert_dir, &cfg.node_name).await?;
    }
    let mut client_cfg = match &cfg.kubeconfig {
        Some(p) => client::Config::from_kubeconfig(p)?,
        None => client::Config::infer()?,
    };
    if !cfg.rotate_certificates {
        return Ok((client_cfg, None));
    }
    let (Some(cert), Some(key)) = (client_cfg.client_cert_pem.clone(), client_cfg.client_key_pem.clone()) else {
        tracing::info!("client certificate rotation is on, but the kubeconfig has no client certificate");
        return Ok((client_cfg, None));
    };
    let store = FileStore::new("kubelet-client", &cfg.cert_dir, None, None)?;
    let start = match store.current()? {
        Some(p) if p.not_after > jiff::Timestamp::now() => p,
        _ => Pair::parse(&cert, &key)?,
    };
    let rotating = client::RotatingCert::new(start.cert_pem.as_bytes(), start.key_pem.as_bytes())?;
    client_cfg.rotating_cert = Some(rotating.clone());
    Ok((client_cfg, Some(RotatingClient { store, rotating, initial: (cert, key), node: cfg.node_name.clone() })))
}

/// What the client certificate manager is made of once the client exists.
pub struct RotatingClient {
    store: FileStore,
    rotating: Arc<client::RotatingCert>,
    initial: (Vec<u8>, Vec<u8>),
    node: String,
}

impl RotatingClient {
    /// The manager renewing the client certificate through `client` (which presents it).
    pub fn manager(self, client: Client) -> Result<Arc<Manager>, String> {
        let template = Template {
            common_name: format!("system:node:{}", self.node),
            organizations: vec!["system:nodes".into()],
            ..Default::default()
        };
        let rotating = self.rotating.clone();
        Manager::new(
            "kubelet-client",
            client,
            self.store,
            template,
            CLIENT_SIGNER,
            bootstrap::CLIENT_USAGES.to_vec(),
            Some((&self.initial.0, &self.initial.1)),
            Box::new(move |p| {
                if let Err(e) = rotating.set(p.cert_pem.as_bytes(), p.key_pem.as_bytes()) {
                    tracing::error!(error = %e, "loading the new client certificate");
                }
            }),
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fake_apiserver::{Ca, FakeApiserver, Seen, json as reply};
    use base64::Engine;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;
    use x509_parser::prelude::FromDer;

    /// A fake certificates API: CSRs are created (named or `csr-N`), approved and signed by `ca` for `valid` at
    /// once unless `approve` is off, and served by get, list and a watch that sends the object and ends.
    pub(crate) async fn csr_api(valid: Duration, approve: bool) -> FakeApiserver {
        let ca = Ca::new();
        let signer = ca.clone();
        let csrs: Mutex<BTreeMap<String, Value>> = Mutex::default();
        FakeApiserver::start_with(ca, move |seen: &Seen| {
            let base = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
            let mut csrs = csrs.lock().unwrap();
            let (path, query) = seen.path.split_once('?').unwrap_or((seen.path.as_str(), ""));
            match (seen.method.as_str(), path) {
                ("GET", "/healthz") => (200, "ok".into()),
                ("POST", p) if p == base => {
                    let mut csr = seen.body.clone();
                    let name = match csr.pointer("/metadata/name").and_then(Value::as_str) {
                        Some(n) => n.to_string(),
                        None => format!("csr-{}", csrs.len()),
                    };
                    if csrs.contains_key(&name) {
                        return reply(409, json!({"kind": "Status", "code": 409, "reason": "AlreadyExists",
                            "message": format!("certificatesigningrequests.certificates.k8s.io \"{name}\" already exists")}));
                    }
                    csr["metadata"] = json!({"name": name, "uid": format!("uid-{name}"), "resourceVersion": "1"});
                    if approve {
                        let request = base64::engine::general_purpose::STANDARD
                            .decode(csr["spec"]["request"].as_str().unwrap())
                            .unwrap();
                        let cert = signer.sign_csr(std::str::from_utf8(&request).unwrap(), valid);
                        csr["status"] = json!({
                            "conditions": [{"type": "Approved", "status": "True", "reason": "AutoApproved"}],
                            "certificate": base64::engine::general_purpose::STANDARD.encode(cert),
                        });
                    }
                    csrs.insert(name, csr.clone());
                    reply(201, csr)
                }
                ("GET", p) if p == base => {
                    let wanted = form_urlencoded::parse(query.as_bytes())
                        .find(|(k, _)| k == "fieldSelector")
                        .map(|(_, v)| v.trim_start_matches("metadata.name=").to_string());
                    let items: Vec<Value> =
                        csrs.values().filter(|c| wanted.as_deref().is_none_or(|w| c["metadata"]["name"] == w)).cloned().collect();
                    if query.contains("watch=true") {
                        let lines: String =
                            items.iter().map(|i| json!({"type": "ADDED", "object": i}).to_string() + "\n").collect();
                        return (200, lines);
                    }
                    reply(200, json!({"kind": "CertificateSigningRequestList", "metadata": {"resourceVersion": "1"}, "items": items}))
                }
                ("GET", p) => match csrs.get(p.trim_start_matches(base).trim_start_matches('/')) {
                    Some(c) => reply(200, c.clone()),
                    None => reply(404, json!({"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"})),
                },
                _ => reply(404, json!({"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"})),
            }
        })
        .await
    }

    fn csr_posts(fake: &FakeApiserver) -> Vec<Seen> {
        fake.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path == "/apis/certificates.k8s.io/v1/certificatesigningrequests")
            .collect()
    }

    /// The subject (CN, O), SANs and key algorithm OID of a CSR's `spec.request`.
    fn csr_of(body: &Value) -> (String, Vec<String>, Vec<String>, String) {
        let pem = base64::engine::general_purpose::STANDARD.decode(body["spec"]["request"].as_str().unwrap()).unwrap();
        let der = rustls_pemfile::csr(&mut &pem[..]).unwrap().unwrap();
        let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref()).unwrap();
        let info = &req.certification_request_info;
        let cn = info.subject.iter_common_name().next().unwrap().as_str().unwrap().to_string();
        let orgs = info.subject.iter_organization().map(|o| o.as_str().unwrap().to_string()).collect();
        let mut sans = Vec::new();
        for ext in req.requested_extensions().into_iter().flatten() {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                sans.extend(san.general_names.iter().map(|g| g.to_string()));
            }
        }
        (cn, orgs, sans, info.subject_pki.algorithm.algorithm.to_id_string())
    }

    fn bootstrap_kubeconfig(fake: &FakeApiserver, dir: &std::path::Path) -> std::path::PathBuf {
        let ca = base64::engine::general_purpose::STANDARD.encode(&fake.ca.pem);
        let p = dir.join("bootstrap-kubelet.conf");
        std::fs::write(
            &p,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{}\", certificate-authority-data: {ca}}}\nusers:\n- name: tls-bootstrap-token-user\n  user: {{token: abcdef.0123456789abcdef}}\ncontexts:\n- name: b\n  context: {{cluster: c, user: tls-bootstrap-token-user}}\ncurrent-context: b\n",
                fake.config.server
            ),
        )
        .unwrap();
        p
    }

    /// TLS bootstrap as upstream's LoadClientCert: the bootstrap token asks for `system:node:<name>` in
    /// `system:nodes` (ECDSA P-256, digital signature + client auth, the kubelet client signer, a digested name),
    /// the issued pair becomes kubelet-client-current.pem and the kubeconfig is written pointing at it; a valid
    /// kubeconfig skips all of it.
    #[tokio::test]
    async fn tls_bootstrap_writes_the_certificate_and_kubeconfig() {
        let fake = csr_api(Duration::from_secs(3600), true).await;
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = bootstrap_kubeconfig(&fake, dir.path());
        let (kubeconfig, pki) = (dir.path().join("kubelet.conf"), dir.path().join("pki"));
        assert!(!bootstrap::client_config_still_valid(&kubeconfig).unwrap());
        bootstrap::load_client_cert(&kubeconfig, &bootstrap, &pki, "n1").await.unwrap();
        let posts = csr_posts(&fake);
        assert_eq!(posts.len(), 1);
        let sent = &posts[0];
        assert_eq!(sent.authorization.as_deref(), Some("Bearer abcdef.0123456789abcdef"));
        assert_eq!(sent.body["spec"]["signerName"], "kubernetes.io/kube-apiserver-client-kubelet");
        assert_eq!(sent.body["spec"]["usages"], json!(["digital signature", "client auth"]));
        assert_eq!(sent.body["kind"], "CertificateSigningRequest");
        let name = sent.body["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("node-csr-"), "{name}");
        let (cn, orgs, sans, alg) = csr_of(&sent.body);
        assert_eq!((cn.as_str(), orgs, sans), ("system:node:n1", vec!["system:nodes".to_string()], vec![]));
        assert_eq!(alg, "1.2.840.10045.2.1", "an ECDSA key");
        assert!(!fake.seen_at("/healthz").is_empty(), "the apiserver was waited for");
        // The pair and the kubeconfig.
        let current = pki.join("kubelet-client-current.pem");
        assert!(std::fs::symlink_metadata(&current).unwrap().file_type().is_symlink());
        let store = FileStore::new("kubelet-client", &pki, None, None).unwrap();
        let pair = store.current().unwrap().unwrap();
        assert_eq!(pair.common_name, "system:node:n1");
        let key = rcgen::KeyPair::from_pem(&pair.key_pem).unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(
            bootstrap::digested_name(
                &key.subject_public_key_info(),
                "system:node:n1",
                &["system:nodes".into()],
                &bootstrap::CLIENT_USAGES
            ),
            name,
            "the name is digested from the key, subject and usages"
        );
        assert!(!pki.join("kubelet-client.key.tmp").exists(), "the in-flight key is gone");
        let text = std::fs::read_to_string(&kubeconfig).unwrap();
        assert!(text.contains(&format!("client-certificate: {}", current.display())), "{text}");
        assert!(text.contains(&format!("client-key: {}", current.display())), "{text}");
        assert!(text.contains("current-context: default-context"), "{text}");
        let written = client::Config::from_kubeconfig(&kubeconfig).unwrap();
        assert_eq!(written.server, fake.config.server);
        assert_eq!(written.ca_pem.as_deref(), Some(fake.ca.pem.as_bytes()));
        assert_eq!(written.token, None);
        assert!(bootstrap::client_config_still_valid(&kubeconfig).unwrap());
        // The kubeconfig authenticates with the certificate.
        client::Client::new(&written).unwrap().get_raw("/healthz").await.unwrap();
        assert_eq!(fake.seen().last().unwrap().client_cn.as_deref(), Some("system:node:n1"));
        bootstrap::load_client_cert(&kubeconfig, &bootstrap, &pki, "n1").await.unwrap();
        assert_eq!(csr_posts(&fake).len(), 1, "a valid kubeconfig: no new request");
    }

    /// A restart while the CSR waits reuses the key of the first attempt, so the digested name is the same and
    /// the existing CSR is taken up (AlreadyExists); a denied CSR fails with upstream's message.
    #[tokio::test]
    async fn bootstrap_reuses_its_request_and_reports_denials() {
        let fake = csr_api(Duration::from_secs(3600), true).await;
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = bootstrap_kubeconfig(&fake, dir.path());
        let (kubeconfig, pki) = (dir.path().join("kubelet.conf"), dir.path().join("pki"));
        // A key from an attempt that did not finish: its CSR exists already.
        std::fs::create_dir_all(&pki).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(pki.join("kubelet-client.key.tmp"), key.serialize_pem()).unwrap();
        let template = Template {
            common_name: "system:node:n1".into(),
            organizations: vec!["system:nodes".into()],
            ..Default::default()
        };
        use rcgen::PublicKeyData;
        let name = bootstrap::digested_name(
            &key.subject_public_key_info(),
            "system:node:n1",
            &template.organizations,
            &bootstrap::CLIENT_USAGES,
        );
        let client = client::Client::new(&client::Config::from_kubeconfig(&bootstrap).unwrap()).unwrap();
        csr::request_certificate(
            &client,
            &template.csr_pem(&key).unwrap(),
            Some(&name),
            CLIENT_SIGNER,
            &bootstrap::CLIENT_USAGES,
            &key,
        )
        .await
        .unwrap();
        bootstrap::load_client_cert(&kubeconfig, &bootstrap, &pki, "n1").await.unwrap();
        let posts = csr_posts(&fake);
        assert_eq!(posts.len(), 2);
        assert_eq!(posts[1].body["metadata"]["name"], name.as_str(), "the same name: AlreadyExists, reused");
        let pair = FileStore::new("kubelet-client", &pki, None, None).unwrap().current().unwrap().unwrap();
        assert_eq!(
            rcgen::KeyPair::from_pem(&pair.key_pem).unwrap().subject_public_key_info(),
            key.subject_public_key_info()
        );
        // Another key under that name is not compatible.
        let other = rcgen::KeyPair::generate().unwrap();
        let err = csr::request_certificate(
            &client,
            &template.csr_pem(&other).unwrap(),
            Some(&name),
            CLIENT_SIGNER,
            &bootstrap::CLIENT_USAGES,
            &other,
        )
        .await
        .unwrap_err();
        assert!(err.starts_with("retrieved csr is not compatible: "), "{err}");
        // Denied.
        let denied = FakeApiserver::start(|seen: &Seen| {
            let mut csr = seen.body.clone();
            csr["metadata"] = json!({"name": "csr-0", "uid": "u0", "resourceVersion": "1"});
            csr["status"] =
                json!({"conditions": [{"type": "Denied", "reason": "NotAllowed", "message": "no node by that name"}]});
            if seen.method == "POST" {
                return reply(201, csr);
            }
            reply(
                200,
                json!({"kind": "CertificateSigningRequestList", "metadata": {"resourceVersion": "1"}, "items": [csr]}),
            )
        })
        .await;
        let err = csr::wait_for_certificate(&denied.client(), "csr-0", "u0", Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(
            err,
            "cannot watch on the certificate signing request: certificate signing request is denied, reason: NotAllowed, message: no node by that name"
        );
        let err = csr::wait_for_certificate(&denied.client(), "csr-0", "other-uid", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.ends_with("csr \"csr-0\" changed UIDs"), "{err}");
    }

    #[test]
    fn rotation_deadlines_are_jittered_between_70_and_90_percent() {
        let total = jiff::SignedDuration::from_hours(100);
        for _ in 0..200 {
            let d = manager::jittery(total);
            assert!(d >= jiff::SignedDuration::from_hours(70) && d <= jiff::SignedDuration::from_hours(90), "{d:?}");
        }
    }

    /// With rotateCertificates, the kubeconfig's certificate (store empty) is copied to the store and rotated at
    /// once through the client itself: a CSR authenticated by the node's certificate, the new pair stored,
    /// presented by the client from its next connection; the next deadline is 70-90% into the new pair's life.
    #[tokio::test]
    async fn client_certificates_rotate_through_the_client() {
        let fake = csr_api(Duration::from_secs(3600), true).await;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = fake.ca.client_cert("system:node:n1", &["system:nodes"], Duration::from_secs(600));
        let kubeconfig = dir.path().join("kubelet.conf");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{}\", certificate-authority-data: {}}}\nusers:\n- name: u\n  user: {{client-certificate-data: {}, client-key-data: {}}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
                fake.config.server,
                b64(&fake.ca.pem),
                b64(&cert),
                b64(&key)
            ),
        )
        .unwrap();
        let flags = crate::Flags {
            kubeconfig: Some(kubeconfig),
            hostname_override: Some("n1".into()),
            root_dir: Some(dir.path().to_path_buf()),
            rotate_certificates: Some(true),
            ..Default::default()
        };
        let cfg = crate::Config::resolve(flags).unwrap();
        let (client_cfg, rotating) = client_config(&cfg).await.unwrap();
        let rotating_cert = client_cfg.rotating_cert.clone().unwrap();
        let client = client::Client::new(&client_cfg).unwrap();
        let m = rotating.unwrap().manager(client.clone()).unwrap();
        let old = m.current().unwrap();
        assert_eq!((old.not_after - old.not_before).get_seconds(), 601, "the kubeconfig's pair");
        assert!(dir.path().join("pki/kubelet-client-current.pem").exists(), "copied into the store");
        assert!(m.next_rotation_deadline() <= jiff::Timestamp::now(), "a bootstrap pair is rotated at once");
        assert!(m.rotate().await);
        let posts = csr_posts(&fake);
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].client_cn.as_deref(), Some("system:node:n1"), "asked with the node's certificate");
        assert_eq!(posts[0].authorization, None);
        assert_eq!(posts[0].body["metadata"], json!({"generateName": "csr-"}));
        assert_eq!(posts[0].body["spec"]["signerName"], CLIENT_SIGNER);
        let new = m.current().unwrap();
        assert_eq!((new.not_after - new.not_before).get_seconds(), 3601);
        assert_eq!(
            FileStore::new("kubelet-client", &cfg.cert_dir, None, None).unwrap().current().unwrap(),
            Some(new.clone())
        );
        assert_eq!(rotating_cert.rotations(), 1, "the client took the new pair and closed its connections");
        let deadline = m.next_rotation_deadline();
        let (lo, hi) = (
            new.not_before + jiff::SignedDuration::from_secs(2520),
            new.not_before + jiff::SignedDuration::from_secs(3241),
        );
        assert!(deadline >= lo && deadline <= hi, "{deadline} in [{lo}, {hi}]");
        client.get_raw("/healthz").await.unwrap();
    }

    /// serverTLSBootstrap: no serving certificate until the kubelet-serving CSR (node name and IP as SANs, digital
    /// signature + server auth) is issued; then it is presented and kept as kubelet-server-current.pem.
    #[tokio::test]
    async fn serving_certificates_come_from_kubelet_serving_csrs() {
        let fake = csr_api(Duration::from_secs(3600), true).await;
        let dir = tempfile::tempdir().unwrap();
        let flags = crate::Flags {
            hostname_override: Some("n1".into()),
            node_ip: Some("10.0.0.7".into()),
            root_dir: Some(dir.path().to_path_buf()),
            rotate_server_certificates: Some(true),
            ..Default::default()
        };
        let cfg = crate::Config::resolve(flags).unwrap();
        let (serving_cert, m) = serving(&cfg, Some(&fake.client())).unwrap();
        let m = m.unwrap();
        assert!(!serving_cert.ready(), "nothing to present before the CSR is issued");
        let (tx, rx) = tokio::sync::watch::channel(false);
        let run = tokio::spawn(m.clone().run(rx));
        for _ in 0..100 {
            if serving_cert.ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(serving_cert.ready());
        let posts = csr_posts(&fake);
        assert_eq!(posts[0].body["spec"]["signerName"], "kubernetes.io/kubelet-serving");
        assert_eq!(posts[0].body["spec"]["usages"], json!(["digital signature", "server auth"]));
        let (cn, orgs, sans, _) = csr_of(&posts[0].body);
        assert_eq!((cn.as_str(), orgs), ("system:node:n1", vec!["system:nodes".to_string()]));
        assert_eq!(sans, vec!["DNSName(n1)".to_string(), "IPAddress(0a:00:00:07)".into()]);
        let pair = FileStore::new("kubelet-server", &cfg.cert_dir, None, None).unwrap().current().unwrap().unwrap();
        assert_eq!(pair.dns_names, vec!["n1".to_string()]);
        assert_eq!(pair.ips, vec!["10.0.0.7".parse::<IpAddr>().unwrap()]);
        tx.send(true).unwrap();
        run.await.unwrap();
        // Without serverTLSBootstrap: a self-signed pair made once.
        let mut plain = cfg.clone();
        plain.server_tls_bootstrap = false;
        let (self_signed, none) = serving(&plain, None).unwrap();
        assert!(self_signed.ready() && none.is_none());
        assert!(cfg.cert_dir.join("kubelet.crt").exists() && cfg.cert_dir.join("kubelet.key").exists());
    }
}
