//! `kubeadm token create|list|delete|generate`.

use clap::Subcommand;
use serde_json::Value;

use super::{Error, Result};
use crate::config::BootstrapToken;
use crate::constants as k;
use crate::phases::Context;

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create bootstrap tokens on the server
    Create {
        /// The token to create (generated when absent).
        token: Option<String>,
        /// Instead of printing only the token, print the full 'kubeadm join' flag needed to join the cluster using the token.
        #[arg(long)]
        print_join_command: bool,
        /// The duration before the token is automatically deleted (e.g. 1s, 2m, 3h). If set to '0', the token will never expire
        #[arg(long, default_value = "24h0m0s")]
        ttl: String,
        /// Describes the ways in which this token can be used.
        #[arg(long, value_delimiter = ',', default_value = "signing,authentication")]
        usages: Vec<String>,
        /// Extra groups that this token will authenticate as when used for authentication.
        #[arg(long, value_delimiter = ',', default_value = k::NODE_BOOTSTRAP_TOKEN_AUTH_GROUP)]
        groups: Vec<String>,
        /// A human friendly description of how this token is used.
        #[arg(long, default_value = "")]
        description: String,
        /// When used together with '--print-join-command', print the full 'kubeadm join' flag needed to join the cluster as a control-plane.
        #[arg(long)]
        certificate_key: Option<String>,
        #[arg(long, default_value = "/etc/kubernetes/admin.conf")]
        kubeconfig: String,
        #[arg(long)]
        config: Option<String>,
    },
    /// List bootstrap tokens on the server
    List {
        #[arg(long, default_value = "/etc/kubernetes/admin.conf")]
        kubeconfig: String,
    },
    /// Delete bootstrap tokens on the server
    Delete {
        /// Tokens or token ids.
        #[arg(required = true)]
        tokens: Vec<String>,
        #[arg(long, default_value = "/etc/kubernetes/admin.conf")]
        kubeconfig: String,
    },
    /// Generate and print a bootstrap token, but do not create it on the server
    Generate,
}

pub async fn run(ctx: &Context, cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Generate => {
            ctx.out.line(crate::token::generate());
            Ok(())
        }
        TokenCmd::Create {
            token,
            print_join_command,
            ttl,
            usages,
            groups,
            description,
            certificate_key,
            kubeconfig,
            config: _,
        } => {
            for u in &usages {
                if !matches!(u.as_str(), "signing" | "authentication") {
                    return Err(Error::Other(format!(
                        "invalid bootstrap token usage string: {u}, valid usage options: signing, authentication"
                    )));
                }
            }
            for g in &groups {
                if !g.starts_with("system:bootstrappers:") {
                    return Err(Error::Other(format!(
                        "{g:?} (in \"--groups\") must match \"\\\\Asystem:bootstrappers:[a-z0-9:-]{{0,255}}[a-z0-9]\\\\z\""
                    )));
                }
            }
            crate::config::duration::parse(&ttl).map_err(Error::Other)?;
            let token = token.unwrap_or_else(crate::token::generate);
            let t = BootstrapToken { token: token.clone(), description, ttl: Some(ttl), expires: None, usages, groups };
            let path = std::path::PathBuf::from(&kubeconfig);
            let c = ctx.client_from(&path)?;
            crate::phases::bootstraptoken::create_tokens(&c, &[t], ctx.now()).await?;
            if print_join_command {
                let text = ctx.fs.read_string(&path).map_err(crate::phases::io(&path))?;
                let kc = crate::kubeconfig::parse(&text).map_err(crate::phases::Error::from)?;
                let hash = crate::token::ca_cert_hash(&kc.ca_pem).map_err(Error::Other)?;
                let endpoint = kc.server.trim_start_matches("https://").trim_end_matches('/').to_string();
                ctx.out.line(super::init::join_command(&endpoint, &token, &hash, certificate_key.as_deref(), false));
            } else {
                ctx.out.line(token);
            }
            Ok(())
        }
        TokenCmd::List { kubeconfig } => {
            let c = ctx.client_from(std::path::Path::new(&kubeconfig))?;
            let list = c
                .api("", "v1", "secrets")?
                .namespaced(k::KUBE_SYSTEM)
                .list(&client::ListParams {
                    field_selector: Some(format!("type={}", crate::token::SECRET_TYPE)),
                    ..Default::default()
                })
                .await?;
            let tokens: Vec<BootstrapToken> = list["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|s| s["type"] == crate::token::SECRET_TYPE)
                        .filter_map(crate::token::from_secret)
                        .collect()
                })
                .unwrap_or_default();
            ctx.out.line(crate::token::list_table(&tokens, ctx.now()).trim_end());
            Ok(())
        }
        TokenCmd::Delete { tokens, kubeconfig } => {
            let c = ctx.client_from(std::path::Path::new(&kubeconfig))?;
            let api = c.api("", "v1", "secrets")?.namespaced(k::KUBE_SYSTEM);
            for t in tokens {
                let id = match crate::token::parse(&t) {
                    Some((id, _)) => id.to_string(),
                    None if t.len() == 6 && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) => {
                        t.clone()
                    }
                    None => {
                        return Err(Error::Other("given token didn't match pattern \"^([a-z0-9]{6})$\" or \"^([a-z0-9]{6})\\\\.([a-z0-9]{16})$\"".into()));
                    }
                };
                let name = format!("{}{id}", crate::token::SECRET_PREFIX);
                api.delete(&name, None::<&Value>)
                    .await
                    .map_err(|e| Error::Other(format!("failed to delete bootstrap token {id:?}: {e}")))?;
                ctx.out.line(format!("bootstrap token {id:?} deleted"));
            }
            Ok(())
        }
    }
}
