//! Where the apiserver is and how to authenticate: a kubeconfig file (`$KUBECONFIG`, `~/.kube/config`), or the
//! in-cluster service account, as client-go resolves them.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::Error;

/// Resolved connection settings.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// `https://host:port`.
    pub server: String,
    /// PEM of the CA that signed the server certificate (None: the system has no roots here, so required).
    pub ca_pem: Option<Vec<u8>>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    pub token: Option<String>,
    pub insecure_skip_tls_verify: bool,
    /// Namespace of the current context (or the service account's), "default" otherwise.
    pub namespace: String,
    /// A client certificate that can be replaced while the client runs (wins over `client_cert_pem`); replacing
    /// it closes the client's connections.
    pub rotating_cert: Option<std::sync::Arc<crate::RotatingCert>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct ClusterFields {
    server: Option<String>,
    certificate_authority: Option<PathBuf>,
    certificate_authority_data: Option<String>,
    insecure_skip_tls_verify: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct UserFields {
    client_certificate: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_key: Option<PathBuf>,
    client_key_data: Option<String>,
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
struct ContextFields {
    cluster: String,
    user: Option<String>,
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: ClusterFields,
}
#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: UserFields,
}
#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: ContextFields,
}

fn b64(s: &str) -> Result<Vec<u8>, Error> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| Error::Config(format!("invalid base64 data: {e}")))
}

/// Reads a file named in a kubeconfig, relative to the kubeconfig's directory.
fn read_rel(base: &Path, p: &Path) -> Result<Vec<u8>, Error> {
    let path = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
    std::fs::read(&path).map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))
}

impl Config {
    /// The current context of a kubeconfig file.
    pub fn from_kubeconfig(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::from_kubeconfig_context(path, None)
    }

    pub fn from_kubeconfig_context(path: impl AsRef<Path>, context: Option<&str>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        let kc: Kubeconfig =
            serde_yaml_ng::from_str(&text).map_err(|e| Error::Config(format!("parsing {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let ctx_name = context
            .map(str::to_string)
            .or(kc.current_context.clone())
            .ok_or_else(|| Error::Config("no current-context".into()))?;
        let ctx = kc
            .contexts
            .iter()
            .find(|c| c.name == ctx_name)
            .ok_or_else(|| Error::Config(format!("context {ctx_name:?} not found")))?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| Error::Config(format!("cluster {:?} not found", ctx.context.cluster)))?;
        let user = ctx.context.user.as_ref().and_then(|u| kc.users.iter().find(|x| &x.name == u));
        let c = &cluster.cluster;
        let mut cfg = Config {
            server: c.server.clone().ok_or_else(|| Error::Config("cluster has no server".into()))?,
            insecure_skip_tls_verify: c.insecure_skip_tls_verify.unwrap_or(false),
            namespace: ctx.context.namespace.clone().unwrap_or_else(|| "default".into()),
            ..Default::default()
        };
        cfg.ca_pem = match (&c.certificate_authority_data, &c.certificate_authority) {
            (Some(d), _) => Some(b64(d)?),
            (None, Some(p)) => Some(read_rel(base, p)?),
            _ => None,
        };
        if let Some(u) = user.map(|u| &u.user) {
            cfg.client_cert_pem = match (&u.client_certificate_data, &u.client_certificate) {
                (Some(d), _) => Some(b64(d)?),
                (None, Some(p)) => Some(read_rel(base, p)?),
                _ => None,
            };
            cfg.client_key_pem = match (&u.client_key_data, &u.client_key) {
                (Some(d), _) => Some(b64(d)?),
                (None, Some(p)) => Some(read_rel(base, p)?),
                _ => None,
            };
            cfg.token = match (&u.token, &u.token_file) {
                (Some(t), _) => Some(t.clone()),
                (None, Some(p)) => Some(String::from_utf8_lossy(&read_rel(base, p)?).trim().to_string()),
                _ => None,
            };
        }
        Ok(cfg)
    }

    /// The service account a pod runs as (`KUBERNETES_SERVICE_HOST`/`_PORT` and the mounted token and CA).
    pub fn in_cluster() -> Result<Self, Error> {
        const DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| Error::Config("not in a cluster".into()))?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let read = |f: &str| {
            std::fs::read(Path::new(DIR).join(f)).map_err(|e| Error::Config(format!("reading {DIR}/{f}: {e}")))
        };
        Ok(Config {
            server: format!("https://{host}:{port}"),
            ca_pem: Some(read("ca.crt")?),
            token: Some(String::from_utf8_lossy(&read("token")?).trim().to_string()),
            namespace: read("namespace")
                .map(|n| String::from_utf8_lossy(&n).trim().to_string())
                .unwrap_or_else(|_| "default".into()),
            ..Default::default()
        })
    }

    /// `$KUBECONFIG` (first file), then `~/.kube/config`, then in-cluster.
    pub fn infer() -> Result<Self, Error> {
        if let Ok(kc) = std::env::var("KUBECONFIG")
            && let Some(first) = kc.split(':').find(|p| !p.is_empty())
        {
            return Self::from_kubeconfig(first);
        }
        if let Ok(home) = std::env::var("HOME") {
            let p = Path::new(&home).join(".kube/config");
            if p.exists() {
                return Self::from_kubeconfig(p);
            }
        }
        Self::in_cluster()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubeconfig_with_data_and_files() {
        let dir = std::env::temp_dir().join(format!("kc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), "CA").unwrap();
        let kc = dir.join("config");
        std::fs::write(
            &kc,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://1.2.3.4:6443\n    certificate-authority: ca.crt\nusers:\n- name: u\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n- name: t\n  user:\n    token: abc\ncontexts:\n- name: x\n  context: {cluster: c, user: u, namespace: team}\n- name: y\n  context: {cluster: c, user: t}\ncurrent-context: x\n",
        )
        .unwrap();
        let c = Config::from_kubeconfig(&kc).unwrap();
        assert_eq!(c.server, "https://1.2.3.4:6443");
        assert_eq!(c.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert_eq!(c.client_cert_pem.as_deref(), Some(&b"CERT"[..]));
        assert_eq!(c.client_key_pem.as_deref(), Some(&b"KEY"[..]));
        assert_eq!(c.namespace, "team");
        let t = Config::from_kubeconfig_context(&kc, Some("y")).unwrap();
        assert_eq!((t.token.as_deref(), t.namespace.as_str()), (Some("abc"), "default"));
        assert!(Config::from_kubeconfig_context(&kc, Some("nope")).is_err());
        // `tokenFile` (camelCase in kubeconfig, as kube-proxy's DaemonSet writes it), read relative to the file.
        std::fs::write(dir.join("token"), "from-file\n").unwrap();
        let kf = dir.join("config-tokenfile");
        std::fs::write(
            &kf,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: https://1.2.3.4:6443}\nusers:\n- name: f\n  user: {tokenFile: token}\ncontexts:\n- name: z\n  context: {cluster: c, user: f}\ncurrent-context: z\n",
        )
        .unwrap();
        assert_eq!(Config::from_kubeconfig(&kf).unwrap().token.as_deref(), Some("from-file"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
