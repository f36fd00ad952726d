//! The controllers, by upstream name. Each is `run(ctx, stop)`: it builds its informers and queue from the shared
//! [`crate::Context`] and reconciles until `stop` turns true.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;

use crate::Context;

pub mod endpoints;
pub mod endpointslice;
pub mod garbagecollector;
pub mod namespace;
pub mod podgc;
pub mod serviceaccount;
pub mod ttlafterfinished;

type RunFn = fn(Arc<Context>, watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// One controller of the manager.
pub struct Descriptor {
    /// Upstream's name in `--controllers` (the `-controller` alias is accepted too).
    pub name: &'static str,
    pub on_by_default: bool,
    pub run: RunFn,
}

macro_rules! controller {
    ($name:literal, $module:ident :: $f:ident, $default:literal) => {
        Descriptor { name: $name, on_by_default: $default, run: |ctx, stop| Box::pin($module::$f(ctx, stop)) }
    };
}

/// Every controller this manager has.
pub const ALL: &[Descriptor] = &[
    controller!("serviceaccount", serviceaccount::run, true),
    controller!("root-ca-cert-publisher", serviceaccount::run_root_ca_publisher, true),
    controller!("garbagecollector", garbagecollector::run, true),
    controller!("namespace", namespace::run, true),
    controller!("endpoint", endpoints::run, true),
    controller!("endpointslice", endpointslice::run, true),
    controller!("podgc", podgc::run, true),
    controller!("ttl-after-finished", ttlafterfinished::run, true),
];
