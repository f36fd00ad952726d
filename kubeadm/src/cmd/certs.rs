//! `kubeadm certs check-expiration|renew|certificate-key|generate-csr`.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{Error, Result};
use crate::config::InitConfig;
use crate::constants as k;
use crate::phases::{self, Context};
use crate::pki::{self, Ca, certlist};

#[derive(Subcommand, Debug)]
pub enum CertsCmd {
    /// Check certificates expiration for a Kubernetes cluster
    CheckExpiration {
        #[arg(long)]
        cert_dir: Option<String>,
        #[arg(long)]
        config: Option<String>,
    },
    /// Renew certificates for a Kubernetes cluster
    Renew {
        /// A certificate name (`apiserver`, `admin.conf`, ...) or `all`.
        name: String,
        #[arg(long)]
        cert_dir: Option<String>,
        #[arg(long)]
        config: Option<String>,
        /// Create CSRs instead of generating certificates (then --csr-dir).
        #[arg(long)]
        csr_only: bool,
        #[arg(long)]
        csr_dir: Option<String>,
    },
    /// Generate certificate keys
    CertificateKey,
    /// Generate keys and certificate signing requests
    GenerateCsr {
        #[arg(long)]
        cert_dir: Option<String>,
        #[arg(long, default_value = "/etc/kubernetes")]
        kubeconfig_dir: String,
        #[arg(long)]
        config: Option<String>,
    },
}

fn load(config: &Option<String>, cert_dir: &Option<String>) -> Result<InitConfig> {
    let mut docs = match config {
        Some(p) => crate::config::load_file(p)?,
        None => Default::default(),
    };
    if let Some(d) = cert_dir {
        docs.cluster.get_or_insert_with(Default::default).certificates_dir = d.clone();
    }
    // Node-independent commands: placeholders keep validation happy when no InitConfiguration is given.
    let init = docs.init.get_or_insert_with(Default::default);
    if init.local_api_endpoint.advertise_address.is_empty() {
        init.local_api_endpoint.advertise_address = crate::config::default_host_ip().to_string();
    }
    Ok(InitConfig::from_documents(docs)?)
}

/// A renewable item: a certificate file or a kubeconfig with an embedded certificate.
struct Item {
    name: String,
    /// `apiserver` or `admin.conf`.
    path: PathBuf,
    kubeconfig: bool,
    ca: certlist::CaSpec,
    long: String,
}

fn items(cfg: &InitConfig, fs: &dyn crate::fs::Fs) -> Vec<Item> {
    let dir = PathBuf::from(cfg.cert_dir());
    let mut v: Vec<Item> = Vec::new();
    for spec in crate::kubeconfig::ALL {
        v.push(Item {
            name: spec.file.into(),
            path: PathBuf::from(k::KUBERNETES_DIR).join(spec.file),
            kubeconfig: true,
            ca: certlist::CA,
            long: format!(
                "certificate embedded in the kubeconfig file for {}",
                spec.short
                    .trim_start_matches("Generate a kubeconfig file for ")
                    .replace(" *only* for cluster bootstrapping purposes", "")
            ),
        });
    }
    for spec in certlist::ALL {
        v.push(Item {
            name: spec.name.into(),
            path: dir.join(format!("{}.crt", spec.base_name)),
            kubeconfig: false,
            ca: spec.ca,
            long: spec.short.trim_start_matches("Generate the ").to_string(),
        });
    }
    v.retain(|i| fs.exists(&i.path) || i.name == "admin.conf");
    // kubelet.conf is rotated by the kubelet, not renewed by kubeadm (as upstream).
    v.retain(|i| i.name != k::KUBELET_KUBECONFIG);
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn read_cert(fs: &dyn crate::fs::Fs, item: &Item) -> Result<pki::ParsedCert> {
    let bytes = fs.read(&item.path).map_err(phases::io(&item.path))?;
    let pem = if item.kubeconfig {
        let kc = crate::kubeconfig::parse(&String::from_utf8_lossy(&bytes)).map_err(phases::Error::from)?;
        kc.client_cert_pem
            .ok_or_else(|| Error::Other(format!("{}: no embedded client certificate", item.path.display())))?
    } else {
        bytes
    };
    Ok(pki::parse_cert(&pem).map_err(phases::Error::from)?)
}

fn expires(t: jiff::Timestamp) -> String {
    t.strftime("%b %d, %Y %H:%M UTC").to_string()
}

fn residual(now: jiff::Timestamp, t: jiff::Timestamp) -> String {
    let left = now.duration_until(t);
    if left.is_negative() {
        return "<invalid>".into();
    }
    crate::config::duration::short_human(std::time::Duration::from_secs(left.as_secs() as u64))
}

pub async fn run(ctx: &Context, cmd: CertsCmd) -> Result<()> {
    match cmd {
        CertsCmd::CertificateKey => {
            ctx.out.line(phases::uploadcerts::generate_certificate_key());
            Ok(())
        }
        CertsCmd::CheckExpiration { cert_dir, config } => {
            let cfg = load(&config, &cert_dir)?;
            let now = ctx.now();
            let dir = PathBuf::from(cfg.cert_dir());
            let external = |ca: &certlist::CaSpec| !ctx.fs.exists(&dir.join(format!("{}.key", ca.base_name)));
            let mut rows = vec![
                ["CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY", "EXTERNALLY MANAGED"]
                    .map(String::from)
                    .to_vec(),
            ];
            for item in items(&cfg, ctx.fs.as_ref()) {
                match read_cert(ctx.fs.as_ref(), &item) {
                    Ok(c) => rows.push(vec![
                        item.name.clone(),
                        expires(c.not_after),
                        residual(now, c.not_after),
                        item.ca.name.to_string(),
                        format!("{:<8}", if external(&item.ca) { "yes" } else { "no" }),
                    ]),
                    Err(e) => ctx.out.line(format!("!MISSING! {}: {e}", item.name)),
                }
            }
            ctx.out.line(crate::util::tabwrite(&rows).trim_end_matches('\n'));
            ctx.out.line("");
            let mut rows = vec![
                ["CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME", "EXTERNALLY MANAGED"].map(String::from).to_vec(),
            ];
            for ca in [certlist::CA, certlist::ETCD_CA, certlist::FRONT_PROXY_CA] {
                let p = dir.join(format!("{}.crt", ca.base_name));
                let Ok(pem) = ctx.fs.read(&p) else { continue };
                let c = pki::parse_cert(&pem).map_err(phases::Error::from)?;
                rows.push(vec![
                    ca.name.to_string(),
                    expires(c.not_after),
                    residual(now, c.not_after),
                    format!("{:<8}", if external(&ca) { "yes" } else { "no" }),
                ]);
            }
            ctx.out.line(crate::util::tabwrite(&rows).trim_end_matches('\n'));
            Ok(())
        }
        CertsCmd::Renew { name, cert_dir, config, csr_only, csr_dir } => {
            let cfg = load(&config, &cert_dir)?;
            let all = items(&cfg, ctx.fs.as_ref());
            let chosen: Vec<&Item> = if name == "all" {
                all.iter().collect()
            } else {
                let i = all
                    .iter()
                    .find(|i| i.name == name)
                    .ok_or_else(|| Error::Other(format!("unknown certificate {name:?} (or its file is missing)")))?;
                vec![i]
            };
            for item in chosen {
                renew(ctx, &cfg, item, csr_only, csr_dir.as_deref())?;
            }
            if !csr_only {
                ctx.out.line("");
                ctx.out.line("Done renewing certificates. You must restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd, so that they can use the new certificates.");
            }
            Ok(())
        }
        CertsCmd::GenerateCsr { cert_dir, kubeconfig_dir, config } => {
            let cfg = load(&config, &cert_dir)?;
            let alg =
                pki::KeyAlgorithm::parse(&cfg.cluster.encryption_algorithm).unwrap_or(pki::KeyAlgorithm::EcdsaP256);
            let dir = PathBuf::from(cfg.cert_dir());
            for (_, specs) in certlist::for_config(&cfg) {
                for spec in specs {
                    let cc = certlist::cert_config(&spec, &cfg, crate::kubeconfig::cert_validity(&cfg));
                    write_csr(ctx, &dir, spec.base_name, &cc, alg)?;
                }
            }
            for spec in crate::kubeconfig::ALL {
                let (cn, orgs) = crate::kubeconfig::identity(&spec, &cfg);
                let cc = crate::kubeconfig::client_cert_config(&cn, orgs, crate::kubeconfig::cert_validity(&cfg));
                let key = alg.generate().map_err(phases::Error::from)?;
                let csr = pki::csr(&cc, &key).map_err(phases::Error::from)?;
                let conf = PathBuf::from(&kubeconfig_dir).join(spec.file);
                let ca_path = dir.join("ca.crt");
                let ca_pem = ctx.fs.read_string(&ca_path).unwrap_or_default();
                let text = crate::kubeconfig::with_certs(
                    &cfg.cluster.cluster_name,
                    &crate::kubeconfig::server(&spec, &cfg),
                    &ca_pem,
                    &cn,
                    "",
                    &key.serialize_pem(),
                );
                ctx.fs.write(&conf, text.as_bytes(), 0o600).map_err(phases::io(&conf))?;
                let csr_path = PathBuf::from(&kubeconfig_dir).join(format!("{}.csr", spec.file));
                ctx.fs.write(&csr_path, csr.as_bytes(), 0o644).map_err(phases::io(&csr_path))?;
                ctx.out.line(format!("[certs] Generating CSR for {} instead of certificate", spec.file));
            }
            Ok(())
        }
    }
}

fn write_csr(ctx: &Context, dir: &Path, base: &str, cc: &pki::CertConfig, alg: pki::KeyAlgorithm) -> Result<()> {
    let key = alg.generate().map_err(phases::Error::from)?;
    let csr = pki::csr(cc, &key).map_err(phases::Error::from)?;
    let p = dir.join(format!("{base}.csr"));
    ctx.fs.write(&p, csr.as_bytes(), 0o644).map_err(phases::io(&p))?;
    let kp = dir.join(format!("{base}.key"));
    ctx.fs.write(&kp, key.serialize_pem().as_bytes(), 0o600).map_err(phases::io(&kp))?;
    ctx.out.line(format!("[certs] Generating CSR for {base} instead of certificate"));
    Ok(())
}

/// Renews one certificate or kubeconfig by its `kubeadm certs renew` name with the local CA (upstream's
/// `RenewUsingLocalCA`), quietly; false when the CA's key is absent (external CA) or the file does not exist.
pub fn renew_using_local_ca(ctx: &Context, cfg: &InitConfig, name: &str) -> Result<bool> {
    let all = items(cfg, ctx.fs.as_ref());
    let Some(item) = all.iter().find(|i| i.name == name && ctx.fs.exists(&i.path)) else {
        return Ok(false);
    };
    let ca =
        Ca::load(ctx.fs.as_ref(), &PathBuf::from(cfg.cert_dir()), item.ca.base_name).map_err(phases::Error::from)?;
    if ca.key.is_none() {
        return Ok(false);
    }
    let quiet = Context { out: phases::Printer::capture(), ..ctx.clone() };
    renew(&quiet, cfg, item, false, None)?;
    Ok(true)
}

/// Renews one certificate with the same subject, SANs and key, for a fresh validity period.
fn renew(ctx: &Context, cfg: &InitConfig, item: &Item, csr_only: bool, csr_dir: Option<&str>) -> Result<()> {
    let dir = PathBuf::from(cfg.cert_dir());
    let old = read_cert(ctx.fs.as_ref(), item)?;
    let usage = match (old.server_auth, old.client_auth) {
        (true, true) => pki::Usage::ServerAndClient,
        (true, false) => pki::Usage::Server,
        _ => pki::Usage::Client,
    };
    let cc = pki::CertConfig {
        common_name: old.common_name.clone(),
        organization: old.organization.clone(),
        alt_names: old.alt_names.clone(),
        usage,
        validity: crate::kubeconfig::cert_validity(cfg),
    };
    if csr_only {
        let out_dir = PathBuf::from(csr_dir.unwrap_or(cfg.cert_dir()));
        let alg = pki::KeyAlgorithm::parse(&cfg.cluster.encryption_algorithm).unwrap_or(pki::KeyAlgorithm::EcdsaP256);
        let base = item.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        write_csr(ctx, &out_dir, &base, &cc, alg)?;
        return Ok(());
    }
    let ca = Ca::load(ctx.fs.as_ref(), &dir, item.ca.base_name).map_err(phases::Error::from)?;
    if ca.key.is_none() {
        ctx.out
            .line(format!("Detected external {} certificate authority, skipping {} renewal", item.ca.name, item.name));
        return Ok(());
    }
    if item.kubeconfig {
        let text = ctx.fs.read_string(&item.path).map_err(phases::io(&item.path))?;
        let kc = crate::kubeconfig::parse(&text).map_err(phases::Error::from)?;
        let key_pem = String::from_utf8_lossy(&kc.client_key_pem.unwrap_or_default()).into_owned();
        let key =
            rcgen::KeyPair::from_pem(&key_pem).map_err(|e| Error::Other(format!("{}: {e}", item.path.display())))?;
        let cert = ca.sign(&cc, &key, ctx.now()).map_err(phases::Error::from)?;
        let user = kc.raw["users"][0]["name"].as_str().unwrap_or(&old.common_name).to_string();
        let cluster = kc.raw["clusters"][0]["name"].as_str().unwrap_or(&cfg.cluster.cluster_name).to_string();
        let out = crate::kubeconfig::with_certs(
            &cluster,
            &kc.server,
            &String::from_utf8_lossy(&kc.ca_pem),
            &user,
            &cert,
            &key_pem,
        );
        ctx.fs.write(&item.path, out.as_bytes(), 0o600).map_err(phases::io(&item.path))?;
    } else {
        let key_path = item.path.with_extension("key");
        let key_pem = ctx.fs.read_string(&key_path).map_err(phases::io(&key_path))?;
        let key =
            rcgen::KeyPair::from_pem(&key_pem).map_err(|e| Error::Other(format!("{}: {e}", key_path.display())))?;
        let cert = ca.sign(&cc, &key, ctx.now()).map_err(phases::Error::from)?;
        ctx.fs.write(&item.path, cert.as_bytes(), 0o644).map_err(phases::io(&item.path))?;
    }
    ctx.out.line(format!("{} renewed", item.long));
    Ok(())
}
