//! The controllers, by upstream name. Each is `run(ctx, stop)`: it builds its informers and queue from the shared
//! [`crate::Context`] and reconciles until `stop` turns true.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;

use crate::Context;

pub mod bootstrapsigner;
pub mod certificates;
pub mod clusterroleaggregation;
pub mod cronjob;
pub mod csrapproving;
pub mod csrcleaner;
pub mod csrsigning;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod garbagecollector;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccount;
pub mod serviceaccount_tokens;
pub mod statefulset;
pub mod tokencleaner;
pub mod ttlafterfinished;

type RunFn = fn(Arc<Context>, watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// One controller of the manager.
pub struct Descriptor {
    /// Upstream's name in `--controllers` (the `-controller` alias is accepted too).
    pub name: &'static str,
    /// Upstream's other names for it, where its full name is not `<name>-controller`.
    pub aliases: &'static [&'static str],
    /// The service account in kube-system it runs as with `--use-service-account-credentials` (upstream's
    /// `ClientBuilder.ClientOrDie` name, bound to the `system:controller:<account>` role of the RBAC bootstrap
    /// policy); None: always the manager's own identity (upstream's root client builder).
    pub account: Option<&'static str>,
    pub on_by_default: bool,
    pub run: RunFn,
}

macro_rules! controller {
    ($name:literal, as root, $module:ident :: $f:ident, $default:literal) => {
        Descriptor {
            name: $name,
            aliases: &[],
            account: None,
            on_by_default: $default,
            run: |ctx, stop| Box::pin($module::$f(ctx, stop)),
        }
    };
    ($name:literal, as $account:literal, $module:ident :: $f:ident, $default:literal) => {
        controller!($name, [], as $account, $module::$f, $default)
    };
    ($name:literal, [$($alias:literal),*], as $account:literal, $module:ident :: $f:ident, $default:literal) => {
        Descriptor {
            name: $name,
            aliases: &[$($alias),*],
            account: Some($account),
            on_by_default: $default,
            run: |ctx, stop| Box::pin($module::$f(ctx, stop)),
        }
    };
}

/// Every controller this manager has, with upstream's service account names.
pub const ALL: &[Descriptor] = &[
    controller!("serviceaccount", as "service-account-controller", serviceaccount::run, true),
    controller!("root-ca-cert-publisher", as "root-ca-cert-publisher", serviceaccount::run_root_ca_publisher, true),
    controller!("job", as "job-controller", job::run, true),
    controller!("cronjob", as "cronjob-controller", cronjob::run, true),
    controller!("nodelifecycle", as "node-controller", nodelifecycle::run, true),
    controller!("disruption", as "disruption-controller", disruption::run, true),
    controller!("nodeipam", as "node-controller", nodeipam::run, true),
    controller!("resourcequota", as "resourcequota-controller", resourcequota::run, true),
    controller!("replicaset", as "replicaset-controller", replicaset::run, true),
    controller!("replicationcontroller", as "replication-controller", replicaset::run_replication_controller, true),
    controller!("deployment", as "deployment-controller", deployment::run, true),
    controller!("statefulset", as "statefulset-controller", statefulset::run, true),
    controller!("daemonset", as "daemon-set-controller", daemonset::run, true),
    controller!("garbagecollector", as "generic-garbage-collector", garbagecollector::run, true),
    controller!("namespace", as "namespace-controller", namespace::run, true),
    controller!("endpoint", as "endpoint-controller", endpoints::run, true),
    controller!("endpointslice", as "endpointslice-controller", endpointslice::run, true),
    controller!("podgc", as "pod-garbage-collector", podgc::run, true),
    controller!("ttl-after-finished", as "ttl-after-finished-controller", ttlafterfinished::run, true),
    // Upstream starts the legacy token controller with the root client builder (`tokens-controller`).
    controller!("serviceaccount-token", as root, serviceaccount_tokens::run, true),
    controller!(
        "csrsigning",
        ["certificatesigningrequest-signing-controller"],
        as "certificate-controller",
        csrsigning::run,
        true
    ),
    controller!(
        "csrapproving",
        ["certificatesigningrequest-approving-controller"],
        as "certificate-controller",
        csrapproving::run,
        true
    ),
    controller!(
        "csrcleaner",
        ["certificatesigningrequest-cleaner-controller"],
        as "certificate-controller",
        csrcleaner::run,
        true
    ),
    controller!("bootstrapsigner", ["bootstrap-signer-controller"], as "bootstrap-signer", bootstrapsigner::run, false),
    controller!("tokencleaner", ["token-cleaner-controller"], as "token-cleaner", tokencleaner::run, false),
    controller!(
        "clusterrole-aggregation",
        as "clusterrole-aggregation-controller",
        clusterroleaggregation::run,
        true
    ),
];
