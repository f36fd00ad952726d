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
    pub on_by_default: bool,
    pub run: RunFn,
}

macro_rules! controller {
    ($name:literal, $module:ident :: $f:ident, $default:literal) => {
        controller!($name, [], $module::$f, $default)
    };
    ($name:literal, [$($alias:literal),*], $module:ident :: $f:ident, $default:literal) => {
        Descriptor {
            name: $name,
            aliases: &[$($alias),*],
            on_by_default: $default,
            run: |ctx, stop| Box::pin($module::$f(ctx, stop)),
        }
    };
}

/// Every controller this manager has.
pub const ALL: &[Descriptor] = &[
    controller!("serviceaccount", serviceaccount::run, true),
    controller!("root-ca-cert-publisher", serviceaccount::run_root_ca_publisher, true),
    controller!("job", job::run, true),
    controller!("cronjob", cronjob::run, true),
    controller!("nodelifecycle", nodelifecycle::run, true),
    controller!("disruption", disruption::run, true),
    controller!("nodeipam", nodeipam::run, true),
    controller!("resourcequota", resourcequota::run, true),
    controller!("replicaset", replicaset::run, true),
    controller!("replicationcontroller", replicaset::run_replication_controller, true),
    controller!("deployment", deployment::run, true),
    controller!("statefulset", statefulset::run, true),
    controller!("daemonset", daemonset::run, true),
    controller!("garbagecollector", garbagecollector::run, true),
    controller!("namespace", namespace::run, true),
    controller!("endpoint", endpoints::run, true),
    controller!("endpointslice", endpointslice::run, true),
    controller!("podgc", podgc::run, true),
    controller!("ttl-after-finished", ttlafterfinished::run, true),
    controller!("serviceaccount-token", serviceaccount_tokens::run, true),
    controller!("csrsigning", ["certificatesigningrequest-signing-controller"], csrsigning::run, true),
    controller!("csrapproving", ["certificatesigningrequest-approving-controller"], csrapproving::run, true),
    controller!("csrcleaner", ["certificatesigningrequest-cleaner-controller"], csrcleaner::run, true),
    controller!("bootstrapsigner", ["bootstrap-signer-controller"], bootstrapsigner::run, false),
    controller!("tokencleaner", ["token-cleaner-controller"], tokencleaner::run, false),
    controller!("clusterrole-aggregation", clusterroleaggregation::run, true),
];
