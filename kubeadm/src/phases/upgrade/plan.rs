//! `kubeadm upgrade plan` (upstream's `cmd/upgrade/plan.go` and `phases/upgrade/compute.go`): for the target
//! version (the one given, else this kubeadm's own: no release channel is reachable offline) the table of what each
//! node's kubelet and each control-plane component runs now and would run after `kubeadm upgrade apply`, and the
//! component configuration API versions.

use super::versions::ClusterVersions;
use crate::config::InitConfig;
use crate::constants as k;
use crate::util::tabwrite;

/// One row of the plan (upstream's `outputapiv1alpha3.ComponentUpgradePlan`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub node: String,
    pub current: String,
    pub target: String,
}

fn row(name: &str, node: &str, current: &str, target: &str) -> Row {
    Row { name: name.into(), node: node.into(), current: current.into(), target: target.into() }
}

/// The rows: kubelets per node, then kube-apiserver, kube-controller-manager, kube-scheduler per node, kube-proxy,
/// CoreDNS and (local) etcd per node.
pub fn compute(v: &ClusterVersions, cfg: &InitConfig, target: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = v.kubelets.iter().map(|(node, current)| row("kubelet", node, current, target)).collect();
    for comp in [k::KUBE_APISERVER, k::KUBE_CONTROLLER_MANAGER, k::KUBE_SCHEDULER] {
        for (node, current) in v.control_plane.get(comp).into_iter().flatten() {
            rows.push(row(comp, node, current, target));
        }
    }
    rows.push(row(k::KUBE_PROXY, "", v.kube_proxy.as_deref().unwrap_or(""), target));
    rows.push(row("CoreDNS", "", v.coredns.as_deref().unwrap_or(""), k::COREDNS_VERSION));
    if cfg.cluster.etcd.local.is_some() {
        let tag = cfg
            .cluster
            .etcd
            .local
            .as_ref()
            .map(|l| l.image.image_tag.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| k::ETCD_VERSION.to_string());
        for (node, current) in v.control_plane.get(k::ETCD).into_iter().flatten() {
            rows.push(row(k::ETCD, node, current, &tag));
        }
    }
    rows
}

/// Whether anything would change.
pub fn has_upgrades(cluster_version: &str, rows: &[Row], target: &str) -> bool {
    cluster_version != target || rows.iter().any(|r| r.current != r.target)
}

const SEPARATOR: &str = "_____________________________________________________________________";

/// The plan as upstream prints it.
pub fn print(rows: &[Row], target: &str, kubeadm_version: &str, unstable_flag: &str) -> String {
    let mut out = String::new();
    let header = || vec!["COMPONENT".to_string(), "NODE".into(), "CURRENT".into(), "TARGET".into()];
    let to_cells = |r: &Row| vec![r.name.clone(), r.node.clone(), r.current.clone(), r.target.clone()];
    let kubelets: Vec<&Row> = rows.iter().filter(|r| r.name == "kubelet").collect();
    if !kubelets.is_empty() {
        out.push_str(
            "Components that must be upgraded manually after you have upgraded the control plane with 'kubeadm upgrade apply':\n",
        );
        let mut t = vec![header()];
        t.extend(kubelets.iter().map(|r| to_cells(r)));
        out.push_str(&tabwrite(&t));
        out.push('\n');
    }
    out.push_str("Upgrade to the latest stable version:\n\n");
    let mut t = vec![header()];
    t.extend(rows.iter().filter(|r| r.name != "kubelet").map(to_cells));
    out.push_str(&tabwrite(&t));
    out.push('\n');
    out.push_str("You can now apply the upgrade by executing the following command:\n\n");
    out.push_str(&format!("\tkubeadm upgrade apply {target}{unstable_flag}\n\n"));
    if kubeadm_version != target
        && super::policy::Version::parse(target).ok().map(|t| (t.major, t.minor))
            != super::policy::Version::parse(kubeadm_version).ok().map(|v| (v.major, v.minor))
    {
        out.push_str(&format!(
            "Note: Before you can perform this upgrade, you have to update kubeadm to {target}.\n\n"
        ));
    }
    out.push_str(SEPARATOR);
    out.push_str("\n\n");
    out
}

/// The component config table (upstream's `printComponentConfigVersionStates`): both configs are at the only
/// version this kubeadm knows.
pub fn print_component_configs() -> String {
    let mut out = String::from(
        "\nThe table below shows the current state of component configs as understood by this version of kubeadm.\n\
Configs that have a \"yes\" mark in the \"MANUAL UPGRADE REQUIRED\" column require manual config upgrade or\n\
resetting to kubeadm defaults before a successful upgrade can be performed. The version to manually\n\
upgrade to is denoted in the \"PREFERRED VERSION\" column.\n\n",
    );
    let rows: Vec<Vec<String>> = [
        ["API GROUP", "CURRENT VERSION", "PREFERRED VERSION", "MANUAL UPGRADE REQUIRED"],
        ["kubeproxy.config.k8s.io", "v1alpha1", "v1alpha1", "no"],
        ["kubelet.config.k8s.io", "v1beta1", "v1beta1", "no"],
    ]
    .iter()
    .map(|r| r.iter().map(|s| s.to_string()).collect())
    .collect();
    out.push_str(&tabwrite(&rows));
    out.push_str(SEPARATOR);
    out.push('\n');
    out
}
