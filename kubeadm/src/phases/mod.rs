//! kubeadm's workflow phases, one module per upstream phase; each is a function from the configuration to files
//! (through [`crate::fs::Fs`]) or API writes, runnable alone as `kubeadm init phase <name>`.

pub mod addons;
pub mod bootstraptoken;
pub mod certs;
pub mod controlplane;
pub mod etcd;
pub mod join;
pub mod joincontrolplane;
pub mod kubeconfig;
pub mod kubeletfinalize;
pub mod kubeletstart;
pub mod markcontrolplane;
pub mod preflight;
pub mod reset;
pub mod upgrade;
pub mod uploadcerts;
pub mod uploadconfig;
pub mod waitcontrolplane;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::constants as k;
use crate::fs::Fs;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pki(#[from] crate::pki::Error),
    #[error(transparent)]
    Kubeconfig(#[from] crate::kubeconfig::Error),
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Where progress lines go: stdout, or a buffer tests read.
#[derive(Clone, Default)]
pub struct Printer {
    captured: Option<Arc<Mutex<String>>>,
}

impl Printer {
    pub fn stdout() -> Self {
        Printer { captured: None }
    }

    pub fn capture() -> Self {
        Printer { captured: Some(Arc::default()) }
    }

    pub fn line(&self, s: impl AsRef<str>) {
        match &self.captured {
            Some(buf) => {
                let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                b.push_str(s.as_ref());
                b.push('\n');
            }
            None => {
                // A closed pipe (`kubeadm ... | head`) ends the output quietly instead of panicking.
                use std::io::Write;
                let _ = writeln!(std::io::stdout().lock(), "{}", s.as_ref());
            }
        }
    }

    pub fn text(&self) -> String {
        self.captured.as_ref().map(|b| b.lock().unwrap_or_else(|e| e.into_inner()).clone()).unwrap_or_default()
    }
}

/// What every phase runs with: the filesystem, output, the kubelet service and the clock.
#[derive(Clone)]
pub struct Context {
    pub fs: Arc<dyn Fs>,
    pub out: Printer,
    pub kubelet: Arc<dyn crate::kubelet::Service>,
    /// Fixed in tests; `None` reads the clock.
    pub now: Option<jiff::Timestamp>,
    /// Whether this runs on the machine's own root (host checks, kubelet waits, unmounts apply).
    pub host: bool,
}

impl Context {
    pub fn now(&self) -> jiff::Timestamp {
        self.now.unwrap_or_else(jiff::Timestamp::now)
    }

    /// A client from a kubeconfig under `/etc/kubernetes` (read through the filesystem trait).
    pub fn client_from(&self, kubeconfig: &Path) -> Result<client::Client> {
        let text = self.fs.read_string(kubeconfig).map_err(io(kubeconfig))?;
        let p = crate::kubeconfig::parse(&text)?;
        let cfg = client::Config {
            server: p.server,
            ca_pem: Some(p.ca_pem),
            client_cert_pem: p.client_cert_pem,
            client_key_pem: p.client_key_pem,
            token: p.token,
            namespace: "default".into(),
            ..Default::default()
        };
        Ok(client::Client::new(&cfg)?)
    }

    /// The admin client (`admin.conf`).
    pub fn admin_client(&self) -> Result<client::Client> {
        self.client_from(&PathBuf::from(k::KUBERNETES_DIR).join(k::ADMIN_KUBECONFIG))
    }
}

/// Creates an object, or replaces it when it exists (upstream's `apiclient.CreateOrUpdate*`).
pub async fn create_or_update(
    c: &client::Client,
    group: &str,
    version: &str,
    plural: &str,
    obj: &Value,
) -> Result<Value> {
    let mut api = c.api(group, version, plural)?;
    if let Some(ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        api = api.namespaced(ns);
    }
    match api.create(obj).await {
        Ok(v) => Ok(v),
        Err(e) if e.code() == Some(409) => {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            let current = api.get(name).await?;
            let mut o = obj.clone();
            o["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            Ok(api.replace(name, &o).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Retries `f` every 500 ms until it succeeds or `timeout` passes.
pub async fn retry<T, F, Fut>(timeout: std::time::Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}

/// A namespaced RBAC Role granting `verbs` on named objects.
pub fn role(ns: &str, name: &str, rules: Value) -> Value {
    serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": rules})
}

pub fn role_binding(ns: &str, name: &str, role: &str, subjects: Value) -> Value {
    serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": subjects,
    })
}

pub fn cluster_role_binding(name: &str, cluster_role: &str, subjects: Value) -> Value {
    serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": subjects,
    })
}

pub fn group(name: &str) -> Value {
    serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}
