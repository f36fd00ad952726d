//! The command line, with upstream's commands and flags: `init` (and `init phase <name>`), `join`, `reset`,
//! `token`, `certs`, `kubeconfig user`, `config`, `upgrade plan|apply|diff|node`, `version`, `completion`.
//! The hidden `--rootfs` flag (or `KUBEADM_ROOTFS`) roots every path kubeadm writes, for tests.

pub mod certs;
pub mod config;
pub mod init;
pub mod token;
pub mod upgrade;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::phases::{self, Context, Printer};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Phase(#[from] phases::Error),
    #[error("{0}")]
    Config(#[from] crate::config::Error),
    #[error("{0}")]
    Client(#[from] client::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Parser, Debug)]
#[command(name = "kubeadm", about = "kubeadm: easily bootstrap a secure Kubernetes cluster", version = crate::constants::KUBE_VERSION)]
pub struct Cli {
    /// The path to the 'real' host root filesystem (every path kubeadm reads or writes is under it).
    #[arg(long, global = true, env = "KUBEADM_ROOTFS", hide = true)]
    pub rootfs: Option<PathBuf>,
    /// Log level (accepted for compatibility).
    #[arg(short = 'v', long = "v", global = true, hide = true)]
    pub verbosity: Option<u8>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run this command in order to set up the Kubernetes control plane
    Init(init::InitCmd),
    /// Run this on any machine you wish to join an existing cluster
    Join(JoinFlags),
    /// Performs a best effort revert of changes made to this host by 'kubeadm init' or 'kubeadm join'
    Reset(ResetFlags),
    /// Manage bootstrap tokens
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Commands related to handling Kubernetes certificates
    #[command(subcommand)]
    Certs(certs::CertsCmd),
    /// Kubeconfig file utilities
    #[command(subcommand)]
    Kubeconfig(KubeconfigCmd),
    /// Manage configuration for a kubeadm cluster persisted in a ConfigMap in the cluster
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Upgrade your cluster smoothly to a newer version with this command
    #[command(subcommand)]
    Upgrade(upgrade::UpgradeCmd),
    /// Print the version of kubeadm
    Version {
        /// Output format; available options are 'yaml', 'json' and 'short'
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Output shell completion code for the specified shell (bash, zsh or fish)
    Completion { shell: clap_complete::Shell },
}

#[derive(Args, Debug, Default, Clone)]
pub struct JoinFlags {
    /// The API server endpoint (host:port) to discover the cluster through.
    pub endpoint: Option<String>,
    #[arg(long)]
    pub config: Option<String>,
    /// Use this token for both discovery-token and tls-bootstrap-token when those values are not provided.
    #[arg(long)]
    pub token: Option<String>,
    #[arg(long)]
    pub discovery_token: Option<String>,
    /// For token-based discovery, validate that the root CA public key matches this hash (format: "sha256:<hex>").
    #[arg(long, value_delimiter = ',')]
    pub discovery_token_ca_cert_hash: Vec<String>,
    /// For token-based discovery, allow joining without --discovery-token-ca-cert-hash pinning.
    #[arg(long)]
    pub discovery_token_unsafe_skip_ca_verification: bool,
    /// For file-based discovery, a file or URL from which to load cluster information.
    #[arg(long)]
    pub discovery_file: Option<String>,
    #[arg(long)]
    pub tls_bootstrap_token: Option<String>,
    #[arg(long)]
    pub node_name: Option<String>,
    #[arg(long)]
    pub cri_socket: Option<String>,
    #[arg(long, value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,
    /// Create a new control plane instance on this node
    #[arg(long)]
    pub control_plane: bool,
    /// Use this key to decrypt the certificate secrets uploaded by init. The certificate key is a hex encoded string that is an AES key of size 32 bytes.
    #[arg(long)]
    pub certificate_key: Option<String>,
    /// If the node should host a new control plane instance, the IP address the API Server will advertise it's listening on.
    #[arg(long)]
    pub apiserver_advertise_address: Option<String>,
    /// If the node should host a new control plane instance, the port for the API Server to bind to.
    #[arg(long)]
    pub apiserver_bind_port: Option<u16>,
}

#[derive(Args, Debug, Default, Clone)]
pub struct ResetFlags {
    /// Reset the node without prompting for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(long)]
    pub cert_dir: Option<String>,
    #[arg(long)]
    pub cri_socket: Option<String>,
    /// Cleanup the "/etc/kubernetes/tmp" directory
    #[arg(long)]
    pub cleanup_tmp_dir: bool,
    #[arg(long)]
    pub config: Option<String>,
    #[arg(long, value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum KubeconfigCmd {
    /// Output a kubeconfig file for an additional user
    User {
        /// The name of user. It will be used as the CN if client certificates are created
        #[arg(long)]
        client_name: String,
        /// The organizations of the client certificate. It will be used as the O if client certificates are created
        #[arg(long, value_delimiter = ',')]
        org: Vec<String>,
        /// The token that should be used as the authentication mechanism for this kubeconfig, instead of client certificates
        #[arg(long)]
        token: Option<String>,
        /// The validity period of the client certificate. It is an offset from the current time.
        #[arg(long)]
        validity_period: Option<String>,
        #[arg(long)]
        config: Option<String>,
    },
}

/// The execution context for a command line.
pub fn context(cli_root: &Option<PathBuf>) -> Context {
    let root = cli_root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let host = root == std::path::Path::new("/");
    Context {
        fs: Arc::new(crate::fs::HostFs::new(root)),
        out: Printer::stdout(),
        kubelet: Arc::from(crate::kubelet::detect()),
        now: None,
        host,
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    let ctx = context(&cli.rootfs);
    run_with(&ctx, cli.command).await
}

/// Runs a command in a given context (tests pass a captured printer and fake kubelet).
pub async fn run_with(ctx: &Context, command: Command) -> Result<()> {
    match command {
        Command::Init(c) => init::run(ctx, c).await,
        Command::Join(j) => join(ctx, j).await,
        Command::Reset(r) => reset(ctx, r).await,
        Command::Token(t) => token::run(ctx, t).await,
        Command::Certs(c) => certs::run(ctx, c).await,
        Command::Kubeconfig(KubeconfigCmd::User { client_name, org, token, validity_period, config }) => {
            kubeconfig_user(ctx, &client_name, org, token, validity_period, config)
        }
        Command::Config(c) => config::run(ctx, c).await,
        Command::Upgrade(u) => upgrade::run(ctx, u).await,
        Command::Version { output } => {
            version(ctx, output.as_deref());
            Ok(())
        }
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "kubeadm", &mut buf);
            ctx.out.line(String::from_utf8_lossy(&buf).trim_end());
            Ok(())
        }
    }
}

fn version(ctx: &Context, output: Option<&str>) {
    let v = crate::constants::KUBE_VERSION;
    let info = serde_json::json!({"clientVersion": {
        "major": "1", "minor": "33", "gitVersion": v, "gitTreeState": "clean",
        "goVersion": "", "compiler": "rustc", "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    }});
    match output {
        Some("short") => ctx.out.line(v),
        Some("json") => ctx.out.line(serde_json::to_string_pretty(&info).unwrap_or_default()),
        Some("yaml") => ctx.out.line(crate::config::marshal(&info).trim_end()),
        _ => ctx.out.line(format!(
            "kubeadm version: &version.Info{{Major:\"1\", Minor:\"33\", GitVersion:\"{v}\", GitTreeState:\"clean\", Compiler:\"rustc\", Platform:\"{}\"}}",
            info["clientVersion"]["platform"].as_str().unwrap_or_default()
        )),
    }
}

/// The JoinConfiguration from flags and `--config` (upstream's `newJoinData`).
pub fn join_config(j: &JoinFlags) -> Result<crate::config::JoinConfiguration> {
    let mut cfg = match &j.config {
        Some(path) => crate::config::load_file(path)?.join.unwrap_or_default(),
        None => crate::config::JoinConfiguration::default(),
    };
    let discovery_token = j.discovery_token.clone().or(j.token.clone());
    if let Some(f) = &j.discovery_file {
        cfg.discovery.file = Some(crate::config::FileDiscovery { kube_config_path: f.clone() });
    } else if discovery_token.is_some() || j.endpoint.is_some() {
        let bt = cfg.discovery.bootstrap_token.get_or_insert_with(Default::default);
        if let Some(t) = discovery_token {
            bt.token = t;
        }
        if let Some(e) = &j.endpoint {
            bt.api_server_endpoint = e.clone();
        }
        if !j.discovery_token_ca_cert_hash.is_empty() {
            bt.ca_cert_hashes = j.discovery_token_ca_cert_hash.clone();
        }
        bt.unsafe_skip_ca_verification |= j.discovery_token_unsafe_skip_ca_verification;
    }
    if let Some(t) = j.tls_bootstrap_token.clone().or(j.token.clone()) {
        cfg.discovery.tls_bootstrap_token = t;
    }
    if let Some(n) = &j.node_name {
        cfg.node_registration.name = n.clone();
    }
    if let Some(s) = &j.cri_socket {
        cfg.node_registration.cri_socket = s.clone();
    }
    if j.control_plane || j.certificate_key.is_some() || j.apiserver_advertise_address.is_some() {
        let cp = cfg.control_plane.get_or_insert_with(Default::default);
        if let Some(key) = &j.certificate_key {
            cp.certificate_key = key.clone();
        }
        if let Some(a) = &j.apiserver_advertise_address {
            cp.local_api_endpoint.advertise_address = a.clone();
        }
        if let Some(p) = j.apiserver_bind_port {
            cp.local_api_endpoint.bind_port = p;
        }
    }
    crate::config::default_join(&mut cfg);
    if cfg.node_registration.name.is_empty() {
        cfg.node_registration.name = crate::config::hostname();
    }
    Ok(cfg)
}

async fn join(ctx: &Context, j: JoinFlags) -> Result<()> {
    let cfg = join_config(&j)?;
    let mut ignore = j.ignore_preflight_errors.clone();
    ignore.extend(cfg.node_registration.ignore_preflight_errors.iter().cloned());
    Ok(phases::join::run(ctx, &cfg, &ignore).await?)
}

async fn reset(ctx: &Context, r: ResetFlags) -> Result<()> {
    let mut cfg = match &r.config {
        Some(p) => crate::config::load_file(p)?.reset.unwrap_or_default(),
        None => Default::default(),
    };
    if let Some(d) = r.cert_dir {
        cfg.certificates_dir = d;
    }
    if let Some(s) = r.cri_socket {
        cfg.cri_socket = s;
    }
    cfg.force |= r.force;
    cfg.cleanup_tmp_dir |= r.cleanup_tmp_dir;
    crate::config::default_reset(&mut cfg);
    if cfg.cri_socket.is_empty() {
        cfg.cri_socket = crate::constants::DEFAULT_CRI_SOCKET.into();
    }
    if !cfg.force {
        ctx.out.line(
            "W: [reset] WARNING: Changes made to this host by 'kubeadm init' or 'kubeadm join' will be reverted.",
        );
        eprint!("[reset] Are you sure you want to proceed? [y/N]: ");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
            return Err(Error::Other("aborted reset operation".into()));
        }
    }
    phases::reset::remove_etcd_member(ctx, &cfg.certificates_dir).await;
    Ok(phases::reset::run(ctx, &cfg.certificates_dir, &cfg.cri_socket, cfg.cleanup_tmp_dir).await?)
}

fn kubeconfig_user(
    ctx: &Context,
    client_name: &str,
    org: Vec<String>,
    token: Option<String>,
    validity: Option<String>,
    config: Option<String>,
) -> Result<()> {
    let docs = match &config {
        Some(p) => crate::config::load_file(p)?,
        None => Default::default(),
    };
    let cfg = crate::config::InitConfig::from_documents(docs)?;
    let ca = crate::pki::Ca::load(ctx.fs.as_ref(), std::path::Path::new(cfg.cert_dir()), "ca")
        .map_err(phases::Error::from)?;
    let server = cfg.control_plane_url();
    let text = match token {
        Some(t) => crate::kubeconfig::with_token(&cfg.cluster.cluster_name, &server, &ca.cert_pem, client_name, &t),
        None => {
            let validity = match validity {
                Some(v) => crate::config::duration::parse(&v).map_err(Error::Other)?,
                None => crate::kubeconfig::cert_validity(&cfg),
            };
            let alg = crate::pki::KeyAlgorithm::parse(&cfg.cluster.encryption_algorithm)
                .unwrap_or(crate::pki::KeyAlgorithm::EcdsaP256);
            let (cert, key) = ca
                .issue(&crate::kubeconfig::client_cert_config(client_name, org, validity), alg, ctx.now())
                .map_err(phases::Error::from)?;
            crate::kubeconfig::with_certs(
                &cfg.cluster.cluster_name,
                &server,
                &ca.cert_pem,
                client_name,
                &cert,
                &key.serialize_pem(),
            )
        }
    };
    ctx.out.line(text.trim_end());
    Ok(())
}
