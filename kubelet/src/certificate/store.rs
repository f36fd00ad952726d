//! Certificate/key pairs on disk (client-go's certificate file store): `<prefix>-<timestamp>.pem` files holding the
//! certificate chain then the key, and the `<prefix>-current.pem` symlink swapped to the newest through
//! `<prefix>-updated.pem` (recovered at start when a swap was interrupted).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use jiff::Timestamp;

/// A certificate chain with its key, and what the leaf says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The certificates, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// PEM of one DER block.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl Pair {
    /// Parses PEM certificates and a PEM key (the first of each kind counts).
    pub fn parse(cert_pem: &[u8], key_pem: &[u8]) -> Result<Pair, String> {
        let certs = rustls_pemfile::certs(&mut &cert_pem[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("invalid certificate data: {e}"))?;
        let leaf = certs.first().ok_or("no certificate data found")?;
        let key = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|e| format!("invalid key data: {e}"))?
            .ok_or("invalid key data")?;
        let key_label = match &key {
            rustls::pki_types::PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            rustls::pki_types::PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        let (_, x) =
            x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("unable to parse certificate data: {e}"))?;
        let ts = |t: i64| Timestamp::from_second(t).map_err(|e| e.to_string());
        let subject = x.subject();
        let mut dns_names = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = x.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            ips.push(IpAddr::from(a));
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            ips.push(IpAddr::from(a));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Pair {
            cert_pem: certs.iter().map(|c| pem("CERTIFICATE", c)).collect(),
            key_pem: pem(key_label, key.secret_der()),
            not_before: ts(x.validity().not_before.timestamp())?,
            not_after: ts(x.validity().not_after.timestamp())?,
            common_name: subject.iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or_default().into(),
            organizations: subject.iter_organization().filter_map(|a| a.as_str().ok().map(String::from)).collect(),
            dns_names,
            ips,
        })
    }

    /// The certificate and key as one file.
    pub fn file_contents(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// The pairs of one name (`kubelet-client`, `kubelet-server`) in a directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    prefix: String,
    dir: PathBuf,
    /// A pair given as separate files (`tlsCertFile`/`tlsPrivateKeyFile`), used while no current pair exists.
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

fn exists(p: &Path) -> bool {
    std::fs::metadata(p).is_ok()
}

impl FileStore {
    /// Opens the store, finishing a swap to `<prefix>-updated.pem` that was interrupted.
    pub fn new(
        prefix: &str,
        dir: &Path,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    ) -> Result<Self, String> {
        let s = FileStore { prefix: prefix.to_string(), dir: dir.to_path_buf(), cert_file, key_file };
        let current = s.current_path();
        if !exists(&current) {
            let updated = s.dir.join(s.filename("updated"));
            match std::fs::symlink_metadata(&updated) {
                Ok(m) if !m.file_type().is_symlink() => {
                    return Err(format!("expected {updated:?} to be a symlink but it is a file"));
                }
                Ok(_) => std::fs::rename(&updated, &current)
                    .map_err(|e| format!("unable to rename {updated:?} to {current:?}: {e}"))?,
                Err(_) => {}
            }
        }
        Ok(s)
    }

    fn filename(&self, qualifier: &str) -> String {
        format!("{}-{qualifier}.pem", self.prefix)
    }

    /// `<dir>/<prefix>-current.pem`.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(self.filename("current"))
    }

    /// The current pair: the current file, else the configured cert and key files, else `<prefix>.crt` and
    /// `<prefix>.key`; None when there is none.
    pub fn current(&self) -> Result<Option<Pair>, String> {
        let read = |c: &Path, k: &Path| -> Result<Option<Pair>, String> {
            let cert = std::fs::read(c).map_err(|e| format!("reading {}: {e}", c.display()))?;
            let key = std::fs::read(k).map_err(|e| format!("reading {}: {e}", k.display()))?;
            Pair::parse(&cert, &key)
                .map(Some)
                .map_err(|e| format!("could not convert data from {c:?} into cert/key pair: {e}"))
        };
        let current = self.current_path();
        if exists(&current) {
            return read(&current, &current);
        }
        if let (Some(c), Some(k)) = (&self.cert_file, &self.key_file)
            && exists(c)
            && exists(k)
        {
            return read(c, k);
        }
        let (c, k) = (self.dir.join(format!("{}.crt", self.prefix)), self.dir.join(format!("{}.key", self.prefix)));
        if exists(&c) && exists(&k) {
            return read(&c, &k);
        }
        Ok(None)
    }

    /// Writes a new pair (`<prefix>-<timestamp>.pem`, mode 0600) and makes it current.
    pub fn update(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Pair, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let pair = Pair::parse(cert_pem, key_pem)?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("could not create directory {:?} to store certificates: {e}", self.dir))?;
        let stamp = jiff::Zoned::now().strftime("%Y-%m-%d-%H-%M-%S").to_string();
        let path = self.dir.join(self.filename(&stamp));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("could not open {path:?}: {e}"))?;
        f.write_all(pair.file_contents().as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("failed to sync certificate data to disk: {e} (file: {path:?})"))?;
        let path = std::fs::canonicalize(&path).map_err(|e| e.to_string())?;
        let updated = self.dir.join(self.filename("updated"));
        let _ = std::fs::remove_file(&updated);
        std::os::unix::fs::symlink(&path, &updated)
            .map_err(|e| format!("unable to create a symlink from {updated:?} to {path:?}: {e}"))?;
        let current = self.current_path();
        std::fs::rename(&updated, &current).map_err(|e| format!("unable to rename {updated:?} to {current:?}: {e}"))?;
        Ok(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_stored_with_a_current_symlink() {
        let ca = crate::fake_apiserver::Ca::new();
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new("kubelet-client", dir.path(), None, None).unwrap();
        assert_eq!(store.current().unwrap(), None);
        let (cert, key) = ca.client_cert("system:node:n1", &["system:nodes"], std::time::Duration::from_secs(3600));
        let pair = store.update(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(pair.common_name, "system:node:n1");
        assert_eq!(pair.organizations, vec!["system:nodes".to_string()]);
        assert_eq!((pair.not_after - pair.not_before).get_seconds(), 3601);
        let current = dir.path().join("kubelet-client-current.pem");
        assert_eq!(store.current_path(), current);
        let target = std::fs::read_link(&current).unwrap();
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("kubelet-client-2") && name.ends_with(".pem"), "{name}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&current).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n") && text.contains("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(store.current().unwrap(), Some(pair.clone()));
        // An interrupted swap (only the updated link) is finished when the store opens.
        std::fs::rename(&current, dir.path().join("kubelet-client-updated.pem")).unwrap();
        let reopened = FileStore::new("kubelet-client", dir.path(), None, None).unwrap();
        assert_eq!(reopened.current().unwrap(), Some(pair));
        assert!(store.update(b"junk", key.as_bytes()).is_err());
    }
}
