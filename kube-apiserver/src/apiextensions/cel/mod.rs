//! CEL validation rules of CustomResourceDefinitions (`x-kubernetes-validations`, upstream
//! `k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel` and `k8s.io/apiserver/pkg/cel`): the environment and
//! its cost budget ([`library`]), property-name [`escaping`], JSON to CEL [`values`] typed by the structural
//! schema, rule compilation and checks ([`compile`]), the per-version rule tree that evaluates custom resources
//! ([`validator`]) and the checks a CRD's rules must pass ([`validation`]); the library also serves admission
//! expressions, with their [`authz`] functions.

pub mod authz;
pub mod compile;
pub mod escaping;
pub mod library;
pub mod validation;
pub mod validator;
pub mod values;
