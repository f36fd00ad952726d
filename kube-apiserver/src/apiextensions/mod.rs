//! CustomResourceDefinitions (upstream's apiextensions-apiserver, built into this apiserver): the CRD strategy, the
//! controllers that accept names, establish and finalize CRDs, and the snapshot of served custom resources that
//! routing, discovery and OpenAPI read.

pub mod controller;
pub mod crd;
pub mod openapi;
pub mod served;
