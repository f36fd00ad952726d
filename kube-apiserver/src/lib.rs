//! kube-apiserver: the Kubernetes API server. The storage layer ([`storage`]) is only touched from here; the
//! request path is listener -> authentication -> limits -> request info -> registry (strategy, validation)
//! -> storage -> encoding (JSON, Table, watch stream).

pub mod admission;
pub mod aggregator;
pub mod api;
pub mod apiextensions;
pub mod auth;
pub mod authorization;
pub mod bootstrap;
pub mod cacher;
pub mod convert;
pub mod defaults;
pub mod discovery;
pub mod fieldmanager;
pub mod flowcontrol;
pub mod ipalloc;
pub mod metrics;
pub mod negotiation;
pub mod oidc;
pub mod openapi_v2;
pub mod options;
pub mod parseerror;
pub mod pki;
pub mod proxy;
pub mod registry;
pub mod request;
pub mod reviews;
pub mod server;
pub mod service;
pub mod storage;
pub mod strategy;
pub mod subresources;
pub mod table;
pub mod testing;
pub mod tokenrequest;
pub mod validation;
pub mod wsstream;

pub use options::Options;
pub use server::run;
