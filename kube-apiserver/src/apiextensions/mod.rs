//! apiextensions.k8s.io: CustomResourceDefinition structural schemas, JSONPath and printer columns.

pub mod jsonpath;
pub mod printer;
pub mod schema;
