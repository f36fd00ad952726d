//! Structural schemas of CustomResourceDefinitions, after upstream's
//! `k8s.io/apiextensions-apiserver/pkg/apiserver/schema`: the schema model ([`structural`]), the structural checks a
//! CRD must pass ([`structural_check`]), and the algorithms the CR write path runs: [`prune`], [`objectmeta`]
//! coercion, [`defaulting`], [`validate`] (kube-openapi semantics) and [`listtype`] uniqueness. All are pure
//! functions over `serde_json::Value`; problems are [`field::FieldError`]s, convertible to the `Cause`s of a 422.

pub mod defaulting;
pub mod field;
pub mod formats;
pub mod listtype;
pub mod objectmeta;
pub mod prune;
pub mod structural;
pub mod structural_check;
pub mod validate;
