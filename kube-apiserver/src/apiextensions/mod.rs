//! CustomResourceDefinitions (upstream's apiextensions-apiserver, built into this apiserver): the CRD strategy, the
//! controllers that accept names, establish and finalize CRDs, the snapshot of served custom resources that
//! routing, discovery and OpenAPI read, structural schemas (pruning, defaulting, validation), client-go JSONPath and
//! printer-column tables, CEL validation rules, and conversion between versions (webhooks).

pub mod cel;
pub mod controller;
pub mod conversion;
pub mod crd;
pub mod customresource;
pub mod jsonpath;
pub mod openapi;
pub mod printer;
pub mod schema;
pub mod served;
