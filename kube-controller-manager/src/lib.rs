//! kube-controller-manager: the controllers that drive the cluster toward what its objects declare. Each controller
//! is level-triggered on shared informers ([`runtime`]); they run once this process leads the
//! `kube-system/kube-controller-manager` Lease (`--leader-elect`), chosen by `--controllers` with upstream's names.

pub mod clientbuilder;
pub mod controllers;
pub mod options;
pub mod pki;

use std::sync::Arc;
use std::time::Duration;

use client::Client;
pub use clientbuilder::ClientBuilder;
use runtime::daemon::Metrics;
use runtime::events::Recorder;
use runtime::{Informer, InformerParams, SharedInformerFactory};
use tokio::sync::watch;

pub use options::Options;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What every controller gets: the client, the shared informers, the options and the metrics.
pub struct Context {
    /// The controller's client: the manager's own, or with `--use-service-account-credentials` (in the context
    /// [`Context::for_controller`] hands a controller) its service account's.
    pub client: Client,
    /// The shared informers, always on the manager's own identity (upstream's `shared-informers` client).
    pub factory: SharedInformerFactory,
    pub options: Options,
    pub metrics: Metrics,
    /// The cluster CA (PEM) published as `kube-root-ca.crt`: `--root-ca-file`, else the kubeconfig's CA.
    pub root_ca: Option<String>,
    /// Where the controllers' clients come from.
    pub clients: ClientBuilder,
}

impl Context {
    /// Every controller shares `client`, the manager's own.
    pub fn new(client: Client, options: Options, root_ca: Option<String>) -> Arc<Self> {
        Self::with_clients(client.clone(), ClientBuilder::Simple(Box::new(client)), options, root_ca)
    }

    /// The shared informers on `client` (the manager's own), the controllers' clients from `clients`.
    pub fn with_clients(
        client: Client,
        clients: ClientBuilder,
        options: Options,
        root_ca: Option<String>,
    ) -> Arc<Self> {
        let factory = SharedInformerFactory::new(client.clone());
        Arc::new(Context { client, factory, options, metrics: Metrics::default(), root_ca, clients })
    }

    /// The client of the controller whose service account is `account` (upstream's
    /// `ClientBuilder.ClientOrDie("deployment-controller")`); the manager's own without
    /// `--use-service-account-credentials`.
    pub async fn client_for(&self, account: &str) -> Result<Client, BoxError> {
        self.clients.client(account).await
    }

    /// This context as the controller whose service account is `account` sees it: its [`Context::client`] (hence
    /// its APIs and event recorders) is that account's, the informers and everything else are shared.
    pub async fn for_controller(self: &Arc<Self>, account: &str) -> Result<Arc<Self>, BoxError> {
        if let ClientBuilder::Simple(_) = self.clients {
            return Ok(self.clone());
        }
        Ok(Arc::new(Context {
            client: self.client_for(account).await?,
            factory: self.factory.clone(),
            options: self.options.clone(),
            metrics: self.metrics.clone(),
            root_ca: self.root_ca.clone(),
            clients: self.clients.clone(),
        }))
    }

    /// The shared informer of every object of a resource (`"apps", "v1", "deployments"`).
    pub fn informer(&self, group: &str, version: &str, plural: &str) -> Informer {
        self.factory
            .informer_for(group, version, plural, InformerParams::all())
            .unwrap_or_else(|e| panic!("informer for {plural}.{group}/{version}: {e}"))
    }

    /// The typed-by-path client of a resource.
    pub fn api(&self, group: &str, version: &str, plural: &str) -> client::Api {
        self.client.api(group, version, plural).unwrap_or_else(|e| panic!("api {plural}.{group}/{version}: {e}"))
    }

    /// An event recorder reporting as `component` (e.g. `deployment-controller`).
    pub fn recorder(&self, component: &str) -> Recorder {
        Recorder::new(&self.client, component, "").expect("events API")
    }
}

pub use runtime::daemon::stopped;

/// Whether `--controllers` enables `name` (`*` is every default controller; `-name` wins over `*`).
pub fn enabled(flag: &[String], name: &str, on_by_default: bool) -> bool {
    enabled_as(flag, &[name], on_by_default)
}

/// As [`enabled`], for a controller known by several names (any of them, or `<name>-controller`, selects it).
pub fn enabled_as(flag: &[String], names: &[&str], on_by_default: bool) -> bool {
    let matches = |f: &str| names.iter().any(|n| f == *n || f.strip_suffix("-controller") == Some(*n));
    if flag.iter().any(|f| f.strip_prefix('-').is_some_and(matches)) {
        return false;
    }
    if flag.iter().any(|f| matches(f)) {
        return true;
    }
    on_by_default && flag.iter().any(|f| f == "*")
}

/// Starts every enabled controller; returns when `stop` turns true and they have finished.
pub async fn run_controllers(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    for c in controllers::ALL {
        let names: Vec<&str> = std::iter::once(c.name).chain(c.aliases.iter().copied()).collect();
        if !enabled_as(&ctx.options.controllers, &names, c.on_by_default) {
            tracing::info!(controller = c.name, "disabled");
            continue;
        }
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tasks.spawn(async move {
            let ctx = match c.account {
                Some(account) => match controller_context(&ctx, account, &stop).await {
                    Some(ctx) => ctx,
                    None => return,
                },
                None => ctx,
            };
            tracing::info!(controller = c.name, "starting");
            (c.run)(ctx, stop).await
        });
    }
    while tasks.join_next().await.is_some() {}
    ctx.factory.shutdown();
}

/// The context of a controller running as service account `account`, retried (1 s, doubling to 30 s) until it can
/// be made or `stop` turns true (None).
async fn controller_context(ctx: &Arc<Context>, account: &str, stop: &watch::Receiver<bool>) -> Option<Arc<Context>> {
    let mut delay = Duration::from_secs(1);
    loop {
        match ctx.for_controller(account).await {
            Ok(c) => return Some(c),
            Err(e) => tracing::error!(service_account = account, error = %e, "Error in getting client"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(stop.clone()) => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// How controllers get their clients under `opts`: the manager's own `client` (from `cfg`), or with
/// `--use-service-account-credentials` each its service account in kube-system (upstream's `createClientBuilders`).
pub fn client_builder(opts: &Options, cfg: &client::Config, client: &Client) -> ClientBuilder {
    if !opts.use_service_account_credentials {
        return ClientBuilder::Simple(Box::new(client.clone()));
    }
    if opts.service_account_private_key_file.is_none() {
        // Another controller manager may be creating the tokens; TokenRequest does not need the key anyway.
        tracing::info!(
            "Warning: --use-service-account-credentials was specified without providing a --service-account-private-key-file"
        );
    }
    ClientBuilder::Dynamic(Arc::new(clientbuilder::DynamicClientBuilder::new(cfg, client.clone(), "kube-system")))
}

/// Runs the controller manager until `stop`: the health port, then (after winning the election when
/// `--leader-elect`) the controllers.
pub async fn run(opts: Options, stop: watch::Receiver<bool>) -> Result<(), BoxError> {
    let cfg = match &opts.kubeconfig {
        Some(p) => client::Config::from_kubeconfig(p)?,
        None => client::Config::infer()?,
    };
    let client = Client::new(&cfg)?;
    let root_ca = match &opts.root_ca_file {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("--root-ca-file {}: {e}", p.display()))?),
        None => cfg.ca_pem.as_ref().map(|c| String::from_utf8_lossy(c).into_owned()),
    };
    let clients = client_builder(&opts, &cfg, &client);
    let ctx = Context::with_clients(client.clone(), clients, opts.clone(), root_ca);
    let (ready_tx, ready_rx) = watch::channel(false);
    if opts.secure_port != 0 {
        let addr = std::net::SocketAddr::new(opts.bind_address, opts.secure_port);
        let (metrics, stop) = (ctx.metrics.clone(), stop.clone());
        let auth = runtime::delegating_auth::DelegatingAuth::new(opts.delegating.clone())?;
        tokio::spawn(async move {
            if let Err(e) =
                runtime::daemon::serve_health(addr, "kube-controller-manager", metrics, ready_rx, auth, stop).await
            {
                tracing::error!(error = %e, "health port");
            }
        });
    }
    if !opts.leader_elect {
        ready_tx.send_replace(true);
        run_controllers(ctx, stop).await;
        return Ok(());
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let identity = format!("{}_{}", host.trim(), uuid::Uuid::new_v4());
    let config = runtime::leader_election::Config {
        lease_duration: opts.leader_elect_lease_duration,
        renew_deadline: opts.leader_elect_renew_deadline,
        retry_period: opts.leader_elect_retry_period,
        release_on_cancel: true,
    };
    let elector = runtime::leader_election::LeaderElector::new(
        &client,
        &opts.leader_elect_resource_namespace,
        &opts.leader_elect_resource_name,
        &identity,
        config,
    )?;
    ready_tx.send_replace(true);
    let (inner_tx, inner_rx) = watch::channel(false);
    let lead = async {
        tracing::info!(%identity, "became leader");
        run_controllers(ctx.clone(), inner_rx).await;
    };
    let outcome = elector
        .run(
            async {
                tokio::select! {
                    _ = lead => {}
                    _ = stopped(stop.clone()) => {
                        inner_tx.send_replace(true);
                    }
                }
            },
            stopped(stop.clone()),
        )
        .await;
    inner_tx.send_replace(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    if outcome == runtime::leader_election::Outcome::LostLeadership {
        return Err("leader election lost".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_client_for_all_unless_service_account_credentials() {
        let cfg = client::Config {
            server: "https://127.0.0.1:1".into(),
            insecure_skip_tls_verify: true,
            token: Some("mine".into()),
            ..Default::default()
        };
        let client = Client::new(&cfg).unwrap();
        let parse = |args: &[&str]| <Options as clap::Parser>::parse_from(args);
        let opts = parse(&["kube-controller-manager"]);
        let ctx = Context::with_clients(client.clone(), client_builder(&opts, &cfg, &client), opts, None);
        assert!(matches!(ctx.clients, ClientBuilder::Simple(_)));
        let deployment = ctx.for_controller("deployment-controller").await.unwrap();
        assert!(Arc::ptr_eq(&deployment, &ctx), "without the flag every controller shares the manager's context");

        let opts = parse(&["kube-controller-manager", "--use-service-account-credentials"]);
        assert!(matches!(client_builder(&opts, &cfg, &client), ClientBuilder::Dynamic(_)));
        let opts = parse(&["kube-controller-manager", "--use-service-account-credentials=false"]);
        assert!(matches!(client_builder(&opts, &cfg, &client), ClientBuilder::Simple(_)));
    }

    #[test]
    fn upstream_service_account_names() {
        let account = |name: &str| controllers::ALL.iter().find(|c| c.name == name).unwrap().account;
        assert_eq!(account("deployment"), Some("deployment-controller"));
        assert_eq!(account("daemonset"), Some("daemon-set-controller"));
        assert_eq!(account("garbagecollector"), Some("generic-garbage-collector"));
        assert_eq!(account("podgc"), Some("pod-garbage-collector"));
        assert_eq!(account("nodelifecycle"), Some("node-controller"));
        assert_eq!(account("nodeipam"), Some("node-controller"));
        assert_eq!(account("csrapproving"), Some("certificate-controller"));
        assert_eq!(account("bootstrapsigner"), Some("bootstrap-signer"));
        assert_eq!(account("tokencleaner"), Some("token-cleaner"));
        assert_eq!(account("replicationcontroller"), Some("replication-controller"));
        // Upstream's legacy token controller keeps the root client (`tokens-controller`).
        assert_eq!(account("serviceaccount-token"), None);
        assert!(controllers::ALL.iter().all(|c| c.name == "serviceaccount-token" || c.account.is_some()));
    }

    #[test]
    fn controllers_flag_as_upstream() {
        let f = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert!(enabled(&f("*"), "deployment", true));
        assert!(!enabled(&f("*"), "nodeipam-extra", false));
        assert!(!enabled(&f("*,-deployment"), "deployment", true));
        assert!(!enabled(&f("*,-deployment-controller"), "deployment", true));
        assert!(enabled(&f("job"), "job", true));
        assert!(!enabled(&f("job"), "deployment", true));
        assert!(enabled(&f("*,bootstrapsigner"), "bootstrapsigner", false));
        let signer = ["bootstrapsigner", "bootstrap-signer-controller"];
        assert!(enabled_as(&f("bootstrap-signer-controller"), &signer, false));
        assert!(!enabled_as(&f("*"), &signer, false));
        assert!(!enabled_as(&f("*,-bootstrap-signer-controller,bootstrapsigner"), &signer, false));
        let names: Vec<&str> = controllers::ALL.iter().map(|c| c.name).collect();
        for n in [
            "csrsigning",
            "csrapproving",
            "csrcleaner",
            "tokencleaner",
            "clusterrole-aggregation",
            "serviceaccount-token",
        ] {
            assert!(names.contains(&n), "{n}");
        }
    }
}
