//! `kubeadm config print init-defaults|join-defaults`, `config images list`, `config validate`,
//! `config migrate`.

use clap::Subcommand;

use super::{Error, Result};
use crate::config::{
    self, BootstrapToken, BootstrapTokenDiscovery, ClusterConfiguration, InitConfiguration, JoinConfiguration,
};
use crate::constants as k;
use crate::phases::Context;

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print configuration
    Print {
        /// `init-defaults`, `join-defaults`, `reset-defaults` or `upgrade-defaults`.
        what: String,
        /// A comma-separated list for component config API objects to print the default values for. Available values: [KubeProxyConfiguration KubeletConfiguration].
        #[arg(long, value_delimiter = ',')]
        component_configs: Vec<String>,
    },
    /// Interact with container images used by kubeadm
    Images {
        /// `list`
        action: String,
        #[arg(long)]
        config: Option<String>,
        #[arg(long)]
        kubernetes_version: Option<String>,
        #[arg(long)]
        image_repository: Option<String>,
        /// Output format (text, json, yaml).
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
    },
    /// Read an older version of the kubeadm configuration API types from a file, and output the similar config object for the newer version
    Migrate {
        #[arg(long)]
        old_config: String,
        #[arg(long)]
        new_config: Option<String>,
        #[arg(long)]
        allow_experimental_api: bool,
    },
    /// Read a file containing the kubeadm configuration API and report any validation problems
    Validate {
        #[arg(long)]
        config: String,
        #[arg(long)]
        allow_experimental_api: bool,
    },
}

/// Upstream's placeholder InitConfiguration and ClusterConfiguration for `print init-defaults`.
pub fn init_defaults() -> (InitConfiguration, ClusterConfiguration) {
    let mut init = InitConfiguration {
        bootstrap_tokens: vec![BootstrapToken { token: "abcdef.0123456789abcdef".into(), ..Default::default() }],
        ..Default::default()
    };
    init.local_api_endpoint.advertise_address = "1.2.3.4".into();
    init.node_registration.name = "node".into();
    config::default_init(&mut init);
    let mut cluster = ClusterConfiguration::default();
    config::default_cluster(&mut cluster);
    cluster.kubernetes_version = k::KUBE_VERSION.trim_start_matches('v').to_string();
    (init, cluster)
}

pub fn join_defaults() -> JoinConfiguration {
    let mut j = JoinConfiguration::default();
    j.discovery.bootstrap_token = Some(BootstrapTokenDiscovery {
        token: "abcdef.0123456789abcdef".into(),
        api_server_endpoint: "kube-apiserver:6443".into(),
        ca_cert_hashes: vec![],
        unsafe_skip_ca_verification: true,
    });
    j.node_registration.name = "node".into();
    config::default_join(&mut j);
    j
}

/// The documents joined with `---` as upstream prints them.
pub fn print_defaults(what: &str, component_configs: &[String]) -> Result<String> {
    let mut docs: Vec<String> = match what {
        "init-defaults" => {
            let (init, cluster) = init_defaults();
            vec![config::marshal(&init), config::marshal(&cluster)]
        }
        "join-defaults" => vec![config::marshal(&join_defaults())],
        "reset-defaults" => {
            let mut r = config::ResetConfiguration::default();
            config::default_reset(&mut r);
            r.cri_socket = k::DEFAULT_CRI_SOCKET.into();
            vec![config::marshal(&r)]
        }
        other => {
            return Err(Error::Other(format!(
                "unknown configuration {other:?}: use init-defaults, join-defaults or reset-defaults"
            )));
        }
    };
    let (init, cluster) = init_defaults();
    for c in component_configs {
        match c.as_str() {
            "KubeletConfiguration" => {
                docs.push(config::marshal(&config::componentconfigs::kubelet_defaults(&cluster, None)))
            }
            "KubeProxyConfiguration" => {
                docs.push(config::marshal(&config::componentconfigs::kube_proxy_defaults(&init, &cluster, None)))
            }
            other => return Err(Error::Other(format!("unknown component config {other:?}"))),
        }
    }
    Ok(docs.join("---\n"))
}

pub async fn run(ctx: &Context, cmd: ConfigCmd) -> Result<()> {
    match cmd {
        ConfigCmd::Print { what, component_configs } => {
            ctx.out.line(print_defaults(&what, &component_configs)?.trim_end());
            Ok(())
        }
        ConfigCmd::Images { action, config: path, kubernetes_version, image_repository, output } => {
            if action != "list" {
                return Err(Error::Other(format!(
                    "unknown images command {action:?}: no registry is reachable, images are built by deploy/images (use list)"
                )));
            }
            let docs = match &path {
                Some(p) => config::load_file(p)?,
                None => Default::default(),
            };
            let mut cluster = docs.cluster.unwrap_or_default();
            if let Some(v) = kubernetes_version {
                cluster.kubernetes_version = v;
            }
            if let Some(r) = image_repository {
                cluster.image_repository = r;
            }
            config::default_cluster(&mut cluster);
            let images =
                k::images(&cluster.image_repository, &cluster.kubernetes_version, cluster.etcd.local.is_some());
            match output.as_str() {
                "json" => ctx.out.line(serde_json::to_string_pretty(&serde_json::json!({"kind": "Images", "apiVersion": "output.kubeadm.k8s.io/v1alpha3", "images": images})).unwrap_or_default()),
                "yaml" => ctx.out.line(config::marshal(&serde_json::json!({"kind": "Images", "apiVersion": "output.kubeadm.k8s.io/v1alpha3", "images": images})).trim_end()),
                _ => {
                    for i in images {
                        ctx.out.line(i);
                    }
                }
            }
            Ok(())
        }
        ConfigCmd::Validate { config: path, .. } => {
            let docs = config::load_file(&path)?;
            if docs.init.is_some() || docs.cluster.is_some() {
                let mut d = docs.clone();
                let init = d.init.get_or_insert_with(Default::default);
                if init.node_registration.name.is_empty() {
                    init.node_registration.name = "node".into();
                }
                if init.local_api_endpoint.advertise_address.is_empty() {
                    init.local_api_endpoint.advertise_address = "1.2.3.4".into();
                }
                config::InitConfig::from_documents(d)?;
            }
            if let Some(mut j) = docs.join {
                config::default_join(&mut j);
                if j.discovery.bootstrap_token.is_none() && j.discovery.file.is_none() {
                    return Err(Error::Other(
                        "discovery: Invalid value: \"\": bootstrapToken or file must be set".into(),
                    ));
                }
            }
            ctx.out.line("ok");
            Ok(())
        }
        ConfigCmd::Migrate { old_config, new_config, .. } => {
            let docs = config::load_file(&old_config)?;
            let mut out = Vec::new();
            if docs.init.is_some() || docs.cluster.is_some() {
                let mut init = docs.init.clone().unwrap_or_default();
                let mut cluster = docs.cluster.clone().unwrap_or_default();
                config::default_init(&mut init);
                config::default_cluster(&mut cluster);
                out.push(config::marshal(&init));
                out.push(config::marshal(&cluster));
            }
            if let Some(mut j) = docs.join.clone() {
                config::default_join(&mut j);
                out.push(config::marshal(&j));
            }
            if let Some(mut r) = docs.reset.clone() {
                config::default_reset(&mut r);
                out.push(config::marshal(&r));
            }
            for v in [&docs.kubelet, &docs.kube_proxy].into_iter().flatten() {
                out.push(config::marshal(v));
            }
            let text = out.join("---\n");
            match new_config {
                Some(p) => std::fs::write(&p, text).map_err(|e| Error::Other(format!("{p}: {e}")))?,
                None => ctx.out.line(text.trim_end()),
            }
            Ok(())
        }
    }
}
