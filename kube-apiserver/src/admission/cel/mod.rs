//! CEL for admission (upstream `k8s.io/apiserver/pkg/admission/plugin/cel`), shared by ValidatingAdmissionPolicy
//! and the webhooks' matchConditions: [`compile`] checks expressions against the admission environment,
//! [`activation`] binds a request's variables and evaluates expressions (with policy variables) under a budget.
//! Both run on the CEL library of `apiextensions::cel`.

pub mod activation;
pub mod compile;
