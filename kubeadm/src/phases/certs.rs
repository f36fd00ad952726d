//! `kubeadm init phase certs`: the CAs, their certificates and the service-account key pair under the
//! certificates dir. Existing files are reused; a CA certificate without its key is external-CA mode, where
//! every certificate it signs must already exist.

use std::path::{Path, PathBuf};

use super::{Context, Error, Result, io};
use crate::config::InitConfig;
use crate::kubeconfig::{ca_validity, cert_validity};
use crate::pki::certlist::{self, CaSpec, CertSpec};
use crate::pki::{self, Ca, KeyAlgorithm};

fn alg(cfg: &InitConfig) -> KeyAlgorithm {
    KeyAlgorithm::parse(&cfg.cluster.encryption_algorithm).unwrap_or(KeyAlgorithm::EcdsaP256)
}

fn dir(cfg: &InitConfig) -> PathBuf {
    PathBuf::from(cfg.cert_dir())
}

/// Creates (or loads) a CA.
pub fn create_ca(ctx: &Context, cfg: &InitConfig, spec: &CaSpec) -> Result<Ca> {
    let d = dir(cfg);
    let crt = d.join(format!("{}.crt", spec.base_name));
    if ctx.fs.exists(&crt) {
        let ca = Ca::load(ctx.fs.as_ref(), &d, spec.base_name)?;
        if ca.key.is_some() {
            ctx.out.line(format!("[certs] Using existing {} certificate authority", spec.name));
        } else {
            ctx.out.line(format!("[certs] Using existing {} keyless certificate authority", spec.name));
        }
        return Ok(ca);
    }
    ctx.out.line(format!("[certs] Generating \"{}\" certificate and key", spec.base_name));
    let ca = Ca::generate(spec.common_name, ca_validity(cfg), alg(cfg), ctx.now())?;
    let key = ca.key.as_ref().ok_or_else(|| Error::Other("generated CA without key".into()))?;
    pki::write_pair(ctx.fs.as_ref(), &d, spec.base_name, &ca.cert_pem, key)?;
    Ok(ca)
}

fn sorted_names(a: &pki::AltNames) -> (String, String) {
    let mut dns = a.dns.clone();
    dns.sort();
    let mut ips: Vec<String> = a.ips.iter().map(|i| i.to_string()).collect();
    ips.sort();
    (dns.join(" "), ips.join(" "))
}

/// Creates (or keeps) one certificate signed by `ca`.
pub fn create_cert(ctx: &Context, cfg: &InitConfig, spec: &CertSpec, ca: &Ca) -> Result<()> {
    let d = dir(cfg);
    let crt = d.join(format!("{}.crt", spec.base_name));
    let cc = certlist::cert_config(spec, cfg, cert_validity(cfg));
    if ctx.fs.exists(&crt) {
        let pem = ctx.fs.read(&crt).map_err(io(&crt))?;
        let existing = pki::parse_cert(&pem)?;
        let ca_cert = pki::parse_cert(ca.cert_pem.as_bytes())?;
        if existing.issuer_cn != ca_cert.common_name {
            return Err(Error::Other(format!("certificate {} is not signed by corresponding CA", spec.name)));
        }
        let missing: Vec<String> = cc
            .alt_names
            .dns
            .iter()
            .filter(|n| !existing.alt_names.dns.contains(n))
            .cloned()
            .chain(cc.alt_names.ips.iter().filter(|i| !existing.alt_names.ips.contains(i)).map(|i| i.to_string()))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Other(format!(
                "certificate {} is invalid: it does not contain the expected SANs {:?}",
                spec.name, missing
            )));
        }
        ctx.out.line(format!("[certs] Using existing {} certificate and key on disk", spec.name));
        return Ok(());
    }
    if ca.key.is_none() {
        return Err(Error::Other(format!(
            "couldn't create {}: the CA key for {:?} is not present (external CA mode needs {} in {})",
            spec.name,
            spec.ca.name,
            crt.display(),
            cfg.cert_dir()
        )));
    }
    ctx.out.line(format!("[certs] Generating \"{}\" certificate and key", spec.base_name));
    let (pem, key) = ca.issue(&cc, alg(cfg), ctx.now())?;
    if matches!(cc.usage, pki::Usage::Server | pki::Usage::ServerAndClient) {
        let (dns, ips) = sorted_names(&cc.alt_names);
        ctx.out
            .line(format!("[certs] {} serving cert is signed for DNS names [{dns}] and IPs [{ips}]", spec.base_name));
    }
    pki::write_pair(ctx.fs.as_ref(), &d, spec.base_name, &pem, &key)?;
    Ok(())
}

/// The service-account signing key pair (`sa.key`, `sa.pub`).
pub fn create_sa(ctx: &Context, cfg: &InitConfig) -> Result<()> {
    let d = dir(cfg);
    let key_path = d.join("sa.key");
    if ctx.fs.exists(&key_path) {
        ctx.out.line("[certs] Using the existing \"sa\" key");
        return Ok(());
    }
    ctx.out.line("[certs] Generating \"sa\" key and public key");
    let key = alg(cfg).generate()?;
    ctx.fs.write(&key_path, key.serialize_pem().as_bytes(), 0o600).map_err(io(&key_path))?;
    let pub_path = d.join("sa.pub");
    ctx.fs.write(&pub_path, key.public_key_pem().as_bytes(), 0o644).map_err(io(&pub_path))?;
    Ok(())
}

/// Loads a CA of `spec`, creating it first when missing.
pub fn ca_for(ctx: &Context, cfg: &InitConfig, spec: &CaSpec) -> Result<Ca> {
    let d = dir(cfg);
    if ctx.fs.exists(&d.join(format!("{}.crt", spec.base_name))) {
        Ok(Ca::load(ctx.fs.as_ref(), &d, spec.base_name)?)
    } else {
        create_ca(ctx, cfg, spec)
    }
}

/// The whole phase (`kubeadm init phase certs all`).
pub fn run_all(ctx: &Context, cfg: &InitConfig) -> Result<()> {
    ctx.out.line(format!("[certs] Using certificateDir folder {:?}", cfg.cert_dir()));
    for (ca_spec, certs) in certlist::for_config(cfg) {
        let ca = create_ca(ctx, cfg, &ca_spec)?;
        for spec in &certs {
            create_cert(ctx, cfg, spec, &ca)?;
        }
    }
    create_sa(ctx, cfg)
}

/// One sub-phase by name (`ca`, `apiserver`, `etcd-ca`, `sa`...).
pub fn run_one(ctx: &Context, cfg: &InitConfig, name: &str) -> Result<()> {
    match name {
        "sa" => return create_sa(ctx, cfg),
        "ca" => return create_ca(ctx, cfg, &certlist::CA).map(|_| ()),
        "front-proxy-ca" => return create_ca(ctx, cfg, &certlist::FRONT_PROXY_CA).map(|_| ()),
        "etcd-ca" => return create_ca(ctx, cfg, &certlist::ETCD_CA).map(|_| ()),
        _ => {}
    }
    let spec = certlist::ALL
        .iter()
        .find(|s| s.phase == name)
        .ok_or_else(|| Error::Other(format!("unknown certs phase {name:?}")))?;
    let ca = ca_for(ctx, cfg, &spec.ca)?;
    create_cert(ctx, cfg, spec, &ca)
}

/// Whether the cluster CA is external (certificate without key).
pub fn external_ca(ctx: &Context, cert_dir: &Path) -> bool {
    ctx.fs.exists(&cert_dir.join("ca.crt")) && !ctx.fs.exists(&cert_dir.join("ca.key"))
}
