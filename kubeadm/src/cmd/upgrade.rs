//! `kubeadm upgrade plan|apply|diff|node` (upstream's `cmd/kubeadm/app/cmd/upgrade`): the command line, the
//! confirmation and the order of the phases; the work is in [`crate::phases::upgrade`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Args, Subcommand};

use super::{Error, Result};
use crate::config::InitConfig;
use crate::constants as k;
use crate::phases::upgrade::{self as up, policy, staticpods};
use crate::phases::{self, Context};

const DEFAULT_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";

#[derive(Subcommand, Debug)]
pub enum UpgradeCmd {
    /// Check which versions are available to upgrade to and validate whether your current cluster is upgradeable.
    Plan(PlanFlags),
    /// Upgrade your Kubernetes cluster to the specified version
    Apply(ApplyFlags),
    /// Show what differences would be applied to existing static pod manifests. See also: kubeadm upgrade apply --dry-run
    Diff(DiffFlags),
    /// Upgrade commands for a node in the cluster
    Node(NodeCmd),
}

/// The flags `plan` and `apply` share (upstream's `applyPlanFlags`).
#[derive(Args, Debug, Clone, Default)]
pub struct CommonFlags {
    /// The kubeconfig file to use when talking to the cluster.
    #[arg(long, default_value = DEFAULT_KUBECONFIG)]
    pub kubeconfig: String,
    /// Path to a kubeadm configuration file (an UpgradeConfiguration).
    #[arg(long)]
    pub config: Option<String>,
    /// Show unstable versions of Kubernetes as an upgrade alternative and allow upgrading to an alpha/beta/release candidate version of Kubernetes.
    #[arg(long)]
    pub allow_experimental_upgrades: bool,
    /// Show release candidate versions of Kubernetes as an upgrade alternative and allow upgrading to a release candidate version of Kubernetes.
    #[arg(long)]
    pub allow_release_candidate_upgrades: bool,
    /// A list of checks whose errors will be shown as warnings. Example: 'IsPrivilegedUser,Swap'. Value 'all' ignores errors from all checks.
    #[arg(long, value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,
    /// Specifies whether the configuration file that will be used in the upgrade should be printed or not.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct PlanFlags {
    /// The version to plan an upgrade to (default: this kubeadm's version).
    pub version: Option<String>,
    #[command(flatten)]
    pub common: CommonFlags,
}

#[derive(Args, Debug, Clone)]
pub struct ApplyFlags {
    /// The version to upgrade to.
    pub version: Option<String>,
    #[command(flatten)]
    pub common: CommonFlags,
    /// Perform the upgrade and do not prompt for confirmation (non-interactive mode).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Force upgrading although some requirements might not be met. This also implies non-interactive mode.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not change any state, just output what actions would be performed.
    #[arg(long)]
    pub dry_run: bool,
    /// Perform the upgrade of etcd.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub etcd_upgrade: bool,
    /// Perform the renewal of certificates used by component changed during upgrades.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub certificate_renewal: bool,
    /// List of phases to be skipped
    #[arg(long, value_delimiter = ',')]
    pub skip_phases: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DiffFlags {
    /// The version to compare with (default: the cluster's).
    pub version: Option<String>,
    #[arg(long, default_value = DEFAULT_KUBECONFIG)]
    pub kubeconfig: String,
    #[arg(long)]
    pub config: Option<String>,
    /// path to API server manifest
    #[arg(long, default_value = "/etc/kubernetes/manifests/kube-apiserver.yaml")]
    pub api_server_manifest: String,
    /// path to controller manifest
    #[arg(long, default_value = "/etc/kubernetes/manifests/kube-controller-manager.yaml")]
    pub controller_manager_manifest: String,
    /// path to scheduler manifest
    #[arg(long, default_value = "/etc/kubernetes/manifests/kube-scheduler.yaml")]
    pub scheduler_manifest: String,
    /// How many lines of context in the diff
    #[arg(short = 'c', long, default_value_t = 3)]
    pub context_lines: usize,
}

#[derive(Args, Debug, Clone)]
pub struct NodeCmd {
    #[command(subcommand)]
    pub phase: Option<NodePhaseCmd>,
    #[command(flatten)]
    pub flags: NodeFlags,
}

#[derive(Args, Debug, Clone)]
pub struct NodeFlags {
    /// The kubeconfig file to use when talking to the cluster (kubelet.conf on a node without admin.conf).
    #[arg(long, default_value = DEFAULT_KUBECONFIG, global = true)]
    pub kubeconfig: String,
    #[arg(long, global = true)]
    pub config: Option<String>,
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Perform the upgrade of etcd.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", global = true)]
    pub etcd_upgrade: bool,
    /// Perform the renewal of certificates used by component changed during upgrades.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", global = true)]
    pub certificate_renewal: bool,
    #[arg(long, value_delimiter = ',', global = true)]
    pub ignore_preflight_errors: Vec<String>,
    /// List of phases to be skipped
    #[arg(long, value_delimiter = ',', global = true)]
    pub skip_phases: Vec<String>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum NodePhaseCmd {
    /// Use this command to invoke single phase of the "node" workflow
    Phase {
        /// preflight, control-plane, kubelet-config, addon or post-upgrade.
        name: String,
    },
}

/// The phases of `upgrade node`, in order.
pub const NODE_PHASES: [&str; 5] = ["preflight", "control-plane", "kubelet-config", "addon", "post-upgrade"];
/// The phases of `upgrade apply`, in order.
pub const APPLY_PHASES: [&str; 7] =
    ["preflight", "control-plane", "upload-config", "kubelet-config", "bootstrap-token", "addon", "post-upgrade"];

pub async fn run(ctx: &Context, cmd: UpgradeCmd) -> Result<()> {
    match cmd {
        UpgradeCmd::Plan(f) => plan(ctx, f).await,
        UpgradeCmd::Apply(f) => apply(ctx, f, &mut std::io::stdin().lock()).await,
        UpgradeCmd::Diff(f) => diff(ctx, f).await,
        UpgradeCmd::Node(n) => node(ctx, n).await,
    }
}

/// The UpgradeConfiguration of `--config`, if any.
fn upgrade_config(path: &Option<String>) -> Result<crate::config::UpgradeConfiguration> {
    Ok(match path {
        Some(p) => crate::config::load_file(p)?.upgrade.unwrap_or_default(),
        None => Default::default(),
    })
}

fn manifest_timeout(u: &crate::config::UpgradeConfiguration) -> Duration {
    u.timeouts
        .as_ref()
        .and_then(|t| t.upgrade_manifests.as_deref())
        .and_then(|d| crate::config::duration::parse(d).ok())
        .unwrap_or(staticpods::UPGRADE_MANIFEST_TIMEOUT)
}

fn preflight(ctx: &Context, ignore: &[String]) -> Result<()> {
    ctx.out.line("[preflight] Running pre-flight checks.");
    if ctx.host && !phases::preflight::rustix_is_root() {
        let f = phases::preflight::Finding {
            name: "IsPrivilegedUser".into(),
            message: "user is not running as root".into(),
            warning: false,
        };
        phases::preflight::report(ctx, &[f], ignore)?;
    }
    Ok(())
}

fn print_config(ctx: &Context, cfg: &InitConfig) {
    ctx.out.line("[upgrade/config] Configuration used:");
    for l in crate::config::marshal(&cfg.cluster).lines() {
        ctx.out.line(format!("\t{l}"));
    }
}

fn parse_version(s: &str) -> Result<policy::Version> {
    policy::Version::parse(s)
        .map_err(|_| Error::Other(format!("unable to parse normalized version {s:?} as a semantic version")))
}

async fn plan(ctx: &Context, f: PlanFlags) -> Result<()> {
    let u = upgrade_config(&f.common.config)?;
    preflight(ctx, &f.common.ignore_preflight_errors)?;
    let c = ctx.client_from(Path::new(&f.common.kubeconfig))?;
    let cfg = up::fetch_config(ctx, &c, "upgrade/config").await?;
    up::check_cluster_health(ctx, &c, &cfg, &f.common.ignore_preflight_errors).await?;
    if f.common.print_config {
        print_config(ctx, &cfg);
    }
    ctx.out.line("[upgrade] Fetching available versions to upgrade to");
    let versions = up::versions::gather(&c, &cfg).await?;
    ctx.out.line(format!("[upgrade/versions] Cluster version: {}", versions.cluster));
    ctx.out.line(format!("[upgrade/versions] kubeadm version: {}", k::KUBE_VERSION));
    let target = f.version.clone().or_else(|| Some(u.plan.kubernetes_version.clone()).filter(|s| !s.is_empty()));
    let target = parse_version(target.as_deref().unwrap_or(k::KUBE_VERSION))?.to_string();
    ctx.out.line(format!("[upgrade/versions] Target version: {target}"));
    ctx.out.line("");
    let mut target_cfg = cfg.clone();
    target_cfg.cluster.kubernetes_version = target.clone();
    let rows = up::plan::compute(&versions, &target_cfg, &target);
    if !up::plan::has_upgrades(&versions.cluster, &rows, &target) {
        ctx.out.line("Awesome, you're up-to-date! Enjoy!");
    } else {
        let unstable = match parse_version(&target)?.pre.as_str() {
            "" => "",
            p if p.starts_with("rc") => " --allow-release-candidate-upgrades",
            _ => " --allow-experimental-upgrades",
        };
        ctx.out.line(up::plan::print(&rows, &target, k::KUBE_VERSION, unstable).trim_end_matches('\n'));
        ctx.out.line("");
    }
    ctx.out.line(up::plan::print_component_configs().trim_end_matches('\n'));
    Ok(())
}

fn skipped(skip: &[String], phase: &str) -> bool {
    skip.iter().any(|s| s == phase || s == "all")
}

/// `kubeadm upgrade apply <version>`. `stdin` answers the confirmation.
pub async fn apply(ctx: &Context, f: ApplyFlags, stdin: &mut dyn std::io::BufRead) -> Result<()> {
    let u = upgrade_config(&f.common.config)?;
    let version =
        f.version.clone().or_else(|| Some(u.apply.kubernetes_version.clone()).filter(|s| !s.is_empty())).ok_or_else(
            || Error::Other("missing one or more required arguments. Required arguments: [version]".into()),
        )?;
    let force = f.force || u.apply.force_upgrade;
    let dry_run = f.dry_run || u.apply.dry_run;
    let renew = f.certificate_renewal && u.apply.certificate_renewal.unwrap_or(true);
    let etcd_upgrade = f.etcd_upgrade && u.apply.etcd_upgrade.unwrap_or(true);
    let mut skip = f.skip_phases.clone();
    skip.extend(u.apply.skip_phases.iter().cloned());
    let ignore = &f.common.ignore_preflight_errors;

    preflight(ctx, ignore)?;
    let c = ctx.client_from(Path::new(&f.common.kubeconfig))?;
    let stored = up::fetch_config(ctx, &c, "upgrade/config").await?;
    up::check_cluster_health(ctx, &c, &stored, ignore).await?;
    let new = parse_version(&version)?;
    let new_str = new.to_string();
    let mut cfg = stored.clone();
    cfg.cluster.kubernetes_version = new_str.clone();
    if f.common.print_config {
        print_config(ctx, &cfg);
    }
    ctx.out.line(format!("[upgrade/version] You have chosen to upgrade to version {new_str:?}"));
    let versions = up::versions::gather(&c, &stored).await?;
    ctx.out.line(format!("[upgrade/versions] Cluster version: {}", versions.cluster));
    ctx.out.line(format!("[upgrade/versions] kubeadm version: {}", k::KUBE_VERSION));
    let cluster_v = parse_version(&versions.cluster)?;
    let kubeadm_v = parse_version(k::KUBE_VERSION)?;
    let kubelets: Vec<String> = versions.kubelets.values().filter(|v| !v.is_empty()).cloned().collect();
    let errs = policy::enforce(
        &policy::Versions { cluster: &cluster_v, kubeadm: &kubeadm_v, kubelets: Some(&kubelets) },
        &new_str,
        &new,
        f.common.allow_experimental_upgrades,
        f.common.allow_release_candidate_upgrades,
    );
    if !errs.mandatory.is_empty() {
        return Err(Error::Other(format!(
            "[upgrade/version] FATAL: the version argument is invalid due to these fatal errors:\n\n{}\nPlease fix the misalignments highlighted above and try upgrading again",
            policy::format_errors(&errs.mandatory)
        )));
    }
    if !errs.skippable.is_empty() {
        if !force {
            return Err(Error::Other(format!(
                "[upgrade/version] FATAL: the version argument is invalid due to these errors:\n\n{}\nCan be bypassed if you pass the --force flag",
                policy::format_errors(&errs.skippable)
            )));
        }
        ctx.out.line(format!(
            "[upgrade/version] Found {} potential version compatibility errors but skipping since the --force flag is set: \n\n{}",
            errs.skippable.len(),
            policy::format_errors(&errs.skippable)
        ));
    }
    if new > kubeadm_v {
        ctx.out.line(format!(
            "[upgrade/version] {new_str} is newer than this kubeadm ({}): its images must be this build's, tagged {new_str}",
            k::KUBE_VERSION
        ));
    }
    if !(f.yes || force || dry_run) {
        ctx.out.line("[upgrade] Are you sure you want to proceed? [y/N]: ");
        let mut answer = String::new();
        let _ = stdin.read_line(&mut answer);
        if !matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
            return Err(Error::Other("won't proceed; the user didn't answer (Y|y) in order to continue".into()));
        }
    }
    if !dry_run && ctx.host {
        ctx.out.line("[upgrade/prepull] Pulling images required for setting up a Kubernetes cluster");
        let images = k::images(&cfg.cluster.image_repository, &new_str, cfg.cluster.etcd.local.is_some());
        let findings = phases::preflight::image_checks(&images, &cfg.init.node_registration.cri_socket);
        phases::preflight::report(ctx, &findings, ignore)?;
    }

    if !skipped(&skip, "control-plane") {
        ctx.out
            .line(format!("[upgrade/apply] Upgrading your Static Pod-hosted control plane to version {new_str:?}..."));
        control_plane(ctx, &c, &cfg, dry_run, etcd_upgrade, renew, manifest_timeout(&u)).await?;
    }
    post_upgrade(ctx, &c, &cfg, dry_run, &skip, true).await?;
    if dry_run {
        ctx.out.line("[dryrun] Finished dryrunning successfully!");
        return Ok(());
    }
    ctx.out.line("");
    ctx.out.line(format!("[upgrade] SUCCESS! A control plane node of your cluster was upgraded to {new_str:?}."));
    ctx.out.line("");
    ctx.out.line("[upgrade] Now please proceed with upgrading the rest of the nodes by following the right order.");
    Ok(())
}

/// The control-plane phase: the static pods of this node, or (dry run) the manifests they would get.
async fn control_plane(
    ctx: &Context,
    c: &client::Client,
    cfg: &InitConfig,
    dry_run: bool,
    etcd_upgrade: bool,
    renew: bool,
    timeout: Duration,
) -> Result<()> {
    if dry_run {
        let mut comps = vec![k::KUBE_APISERVER, k::KUBE_CONTROLLER_MANAGER, k::KUBE_SCHEDULER];
        if etcd_upgrade && cfg.cluster.etcd.local.is_some() {
            comps.insert(0, k::ETCD);
        }
        for comp in comps {
            let p = crate::manifests::manifest_path(comp);
            ctx.out.line(format!("[dryrun] Would write file {:?} with content:", p.display().to_string()));
            for l in new_manifest(ctx, cfg, comp).lines() {
                ctx.out.line(format!("\t{l}"));
            }
        }
        return Ok(());
    }
    let keep_etcd = cfg.cluster.etcd.local.is_some() && etcd_upgrade;
    let pm = staticpods::PathManager::create(ctx, keep_etcd)?;
    let waiter = staticpods::Waiter { client: c, timeout, poll: Duration::from_millis(500) };
    let o = staticpods::Options { waiter: &waiter, renew_certs: renew };
    Ok(staticpods::control_plane(ctx, cfg, &pm, &o, etcd_upgrade).await?)
}

/// The phases after the control plane: upload-config and bootstrap-token (apply only), kubelet-config, addon.
async fn post_upgrade(
    ctx: &Context,
    c: &client::Client,
    cfg: &InitConfig,
    dry_run: bool,
    skip: &[String],
    apply: bool,
) -> Result<()> {
    if apply && !skipped(skip, "upload-config") {
        if dry_run {
            ctx.out.line("[dryrun] Would upload the kubeadm-config and kubelet-config ConfigMaps");
        } else {
            up::postupgrade::upload_config(ctx, c, cfg).await?;
        }
    }
    if !skipped(skip, "kubelet-config") {
        up::postupgrade::kubelet_config(ctx, c, dry_run).await?;
    }
    if apply && !skipped(skip, "bootstrap-token") && !dry_run {
        up::postupgrade::bootstrap_token(ctx, c, cfg).await?;
    }
    if !skipped(skip, "addon") && !dry_run && up::is_control_plane(ctx) {
        up::postupgrade::addons(ctx, c, cfg).await?;
    }
    Ok(())
}

fn new_manifest(ctx: &Context, cfg: &InitConfig, component: &str) -> String {
    let pod = match component {
        k::KUBE_APISERVER => crate::manifests::controlplane::apiserver_pod(ctx.fs.as_ref(), cfg),
        k::KUBE_CONTROLLER_MANAGER => crate::manifests::controlplane::controller_manager_pod(ctx.fs.as_ref(), cfg),
        k::KUBE_SCHEDULER => crate::manifests::controlplane::scheduler_pod(cfg),
        _ => crate::manifests::etcd::etcd_pod(cfg),
    };
    crate::manifests::to_yaml(&pod)
}

/// `kubeadm upgrade diff [version]`: a unified diff per manifest (`--- <path>` / `+++ new manifest`).
async fn diff(ctx: &Context, f: DiffFlags) -> Result<()> {
    let c = ctx.client_from(Path::new(&f.kubeconfig))?;
    let mut cfg = up::fetch_config(ctx, &c, "upgrade/diff").await?;
    let u = upgrade_config(&f.config)?;
    if let Some(v) = f.version.clone().or_else(|| Some(u.apply.kubernetes_version.clone()).filter(|s| !s.is_empty())) {
        cfg.cluster.kubernetes_version = parse_version(&v)?.to_string();
    }
    ctx.out.line(diff_text(ctx, &cfg, &f)?.trim_end_matches('\n'));
    Ok(())
}

/// The diff of the three manifests (empty when nothing would change).
pub fn diff_text(ctx: &Context, cfg: &InitConfig, f: &DiffFlags) -> Result<String> {
    let mut out = String::new();
    for (comp, path) in [
        (k::KUBE_APISERVER, &f.api_server_manifest),
        (k::KUBE_CONTROLLER_MANAGER, &f.controller_manager_manifest),
        (k::KUBE_SCHEDULER, &f.scheduler_manifest),
    ] {
        if path.is_empty() {
            continue;
        }
        let p = PathBuf::from(path);
        let old = ctx.fs.read_string(&p).map_err(phases::io(&p))?;
        let new = new_manifest(ctx, cfg, comp);
        let d = similar::TextDiff::from_lines(&old, &new);
        out.push_str(&d.unified_diff().context_radius(f.context_lines).header(path, "new manifest").to_string());
    }
    Ok(out)
}

/// `kubeadm upgrade node [phase <name>]`: on a control-plane node its static pods to the cluster's version, then
/// the kubelet configuration; on a worker only the latter.
async fn node(ctx: &Context, n: NodeCmd) -> Result<()> {
    let f = &n.flags;
    let u = upgrade_config(&f.config)?;
    let only = match &n.phase {
        Some(NodePhaseCmd::Phase { name }) => {
            if !NODE_PHASES.contains(&name.as_str()) {
                return Err(Error::Other(format!(
                    "unknown phase {name:?}; the phases of node are: {}",
                    NODE_PHASES.join(", ")
                )));
            }
            Some(name.clone())
        }
        None => None,
    };
    let run = |p: &str| only.as_deref().is_none_or(|o| o == p) && !skipped(&f.skip_phases, p);
    let mut kubeconfig = PathBuf::from(&f.kubeconfig);
    if f.kubeconfig == DEFAULT_KUBECONFIG && !ctx.fs.exists(&kubeconfig) {
        kubeconfig = PathBuf::from(k::KUBERNETES_DIR).join(k::KUBELET_KUBECONFIG);
    }
    if run("preflight") {
        preflight(ctx, &f.ignore_preflight_errors)?;
    }
    let c = ctx.client_from(&kubeconfig)?;
    let cfg = up::fetch_config(ctx, &c, "upgrade").await?;
    let dry_run = f.dry_run || u.node.dry_run;
    if run("control-plane") {
        if up::is_control_plane(ctx) {
            ctx.out.line(format!(
                "[upgrade] Upgrading your Static Pod-hosted control plane instance to version {:?}...",
                cfg.cluster.kubernetes_version
            ));
            let renew = f.certificate_renewal && u.node.certificate_renewal.unwrap_or(true);
            let etcd = f.etcd_upgrade && u.node.etcd_upgrade.unwrap_or(true);
            control_plane(ctx, &c, &cfg, dry_run, etcd, renew, manifest_timeout(&u)).await?;
        } else {
            ctx.out.line("[upgrade] Skipping phase. Not a control plane node.");
        }
    }
    if run("kubelet-config") {
        up::postupgrade::kubelet_config(ctx, &c, dry_run).await?;
    }
    if run("addon") && !dry_run {
        if up::is_control_plane(ctx) {
            up::postupgrade::addons(ctx, &c, &cfg).await?;
        } else {
            ctx.out.line("[upgrade/addon] Skipping the addon/coredns phase. Not a control plane node.");
        }
    }
    if only.is_none() {
        ctx.out.line("[upgrade] The configuration for this node was successfully upgraded!");
        ctx.out.line("[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.");
    }
    Ok(())
}
