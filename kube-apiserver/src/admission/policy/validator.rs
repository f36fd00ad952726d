//! A policy's expressions, compiled once, and their evaluation on one request (upstream
//! `policy/validating/validator.go`): the matchConditions first (a false one and the policy has nothing to say),
//! then the validations with their messages (`messageExpression`, else `message`, else `failed expression: <e>`)
//! and reasons, then the audit annotations. Evaluation errors become decisions by the failurePolicy: Fail denies,
//! Ignore admits.

use std::sync::Arc;

use kube_cel::cel::Value;
use serde_json::Value as Json;

use crate::admission::cel::activation::{self, Activation, Failure, Inputs, Variable};
use crate::admission::cel::compile::{Compiled, Decls, Want, compile};
use crate::admission::webhook::matchconditions::{Match, MatchConditions};
use crate::apiextensions::cel::library;

/// upstream `celconfig.MaxEvaluatedMessageExpressionSizeBytes`.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;

/// One `spec.validations[i]`, compiled.
#[derive(Debug)]
pub struct Validation {
    pub expression: Compiled,
    pub message: String,
    pub message_expression: Option<Compiled>,
    /// The status reason of a failure (`Invalid` unless said otherwise).
    pub reason: &'static str,
}

/// One `spec.auditAnnotations[i]`, compiled.
#[derive(Debug)]
pub struct AuditAnnotation {
    pub key: String,
    pub value: Compiled,
}

/// The compiled expressions of a policy (upstream `Validator`).
#[derive(Debug)]
pub struct Validator {
    /// `failurePolicy: Ignore` (the default is Fail).
    pub ignore_failures: bool,
    pub variables: Vec<Variable>,
    pub match_conditions: MatchConditions,
    pub validations: Vec<Validation>,
    pub audit_annotations: Vec<AuditAnnotation>,
}

/// What a policy decided about one request (upstream `PolicyDecision`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub deny: bool,
    /// The decision comes from an evaluation error rather than a false validation.
    pub error: bool,
    pub message: String,
    /// `Invalid`, `Forbidden`, `Unauthorized` or `RequestEntityTooLarge`.
    pub reason: &'static str,
}

/// An audit annotation's outcome (upstream `PolicyAuditAnnotation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditOutcome {
    Publish {
        key: String,
        value: String,
    },
    /// The value expression failed under failurePolicy Fail: the request is denied with this message.
    Error(String),
    Exclude,
}

/// Everything a policy said about one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ValidateResult {
    pub decisions: Vec<Decision>,
    pub audit_annotations: Vec<AuditOutcome>,
}

/// The status reasons a validation may name, as `&'static str`.
pub fn reason(r: Option<&str>) -> &'static str {
    match r {
        Some("Unauthorized") => "Unauthorized",
        Some("Forbidden") => "Forbidden",
        Some("RequestEntityTooLarge") => "RequestEntityTooLarge",
        _ => "Invalid",
    }
}

impl Validator {
    /// Compiles a policy's `spec` (upstream `compilePolicy`).
    pub fn compile(spec: &Json) -> Validator {
        let params = spec.get("paramKind").is_some_and(Json::is_object);
        let mut names: Vec<String> = Vec::new();
        let mut variables = Vec::new();
        for v in spec["variables"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap_or_default().to_string();
            let decls = Decls { params, authorizer: true, variables: Some(&names) };
            let compiled = compile(v["expression"].as_str().unwrap_or_default(), decls, Want::Any);
            variables.push(Variable { name: name.clone(), compiled });
            names.push(name);
        }
        let with_authz = Decls { params, authorizer: true, variables: Some(&names) };
        let without_authz = Decls { authorizer: false, ..with_authz };
        let str_of = |v: &Json, k: &str| v[k].as_str().unwrap_or_default().to_string();
        let validations = spec["validations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| Validation {
                expression: compile(&str_of(v, "expression"), with_authz, Want::Bool),
                message: str_of(v, "message"),
                message_expression: v["messageExpression"]
                    .as_str()
                    .filter(|m| !m.is_empty())
                    .map(|m| compile(m, without_authz, Want::String)),
                reason: reason(v["reason"].as_str()),
            })
            .collect();
        let audit_annotations = spec["auditAnnotations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| AuditAnnotation {
                key: str_of(a, "key"),
                value: compile(str_of(a, "valueExpression").trim(), with_authz, Want::StringOrNull),
            })
            .collect();
        let conditions = spec["matchConditions"].as_array().map(Vec::as_slice).unwrap_or_default();
        Validator {
            ignore_failures: spec["failurePolicy"] == "Ignore",
            match_conditions: MatchConditions::compile(conditions, params, Some(&names)),
            variables,
            validations,
            audit_annotations,
        }
    }

    /// An evaluation error as a decision: denied under Fail, admitted under Ignore.
    fn failed(&self, message: String) -> Decision {
        Decision { deny: !self.ignore_failures, error: true, message, reason: "Invalid" }
    }

    /// Evaluates the policy on one request with one param (upstream `validator.Validate`).
    pub fn validate(&self, inputs: &Inputs<'_>) -> ValidateResult {
        library::with_scope(&activation::bindings(inputs), |scope| {
            let act = Activation::new(scope, &self.variables, activation::RUNTIME_COST_BUDGET);
            if !self.match_conditions.is_empty() {
                match self.match_conditions.evaluate(&act, self.ignore_failures) {
                    Match::Matches => {}
                    Match::NoMatch(_) => return ValidateResult::default(),
                    Match::Error(e) => return ValidateResult { decisions: vec![self.failed(e)], ..Default::default() },
                }
            }
            let mut decisions = Vec::with_capacity(self.validations.len());
            for v in &self.validations {
                match act.evaluate(&v.expression) {
                    Ok(Value::Bool(true)) => {
                        decisions.push(Decision { deny: false, error: false, message: String::new(), reason: "" })
                    }
                    Ok(_) => match self.message(&act, v) {
                        Ok(message) => decisions.push(Decision { deny: true, error: false, message, reason: v.reason }),
                        Err(Failure::OutOfBudget) => decisions
                            .push(self.failed(format!("failed messageExpression: {}", activation::OUT_OF_BUDGET))),
                        Err(Failure::Error(e)) => decisions.push(self.failed(e)),
                    },
                    Err(Failure::Error(e)) => decisions.push(self.failed(e)),
                    Err(Failure::OutOfBudget) => {
                        return ValidateResult {
                            decisions: vec![self.failed(activation::OUT_OF_BUDGET.into())],
                            ..Default::default()
                        };
                    }
                }
            }
            let audit = Activation::new(scope, &self.variables, activation::RUNTIME_COST_BUDGET);
            let mut audit_annotations = Vec::with_capacity(self.audit_annotations.len());
            for a in &self.audit_annotations {
                let outcome = match audit.evaluate(&a.value) {
                    Ok(Value::String(s)) if s.trim().is_empty() => AuditOutcome::Exclude,
                    Ok(Value::String(s)) => AuditOutcome::Publish { key: a.key.clone(), value: s.trim().to_string() },
                    Ok(Value::Null) => AuditOutcome::Exclude,
                    Ok(other) => AuditOutcome::Error(format!(
                        "valueExpression '{}' resulted in unsupported return type: {}. Return type must be either string or null.",
                        a.value.source,
                        library::type_name(&other)
                    )),
                    Err(_) if self.ignore_failures => AuditOutcome::Exclude,
                    Err(Failure::Error(e)) => AuditOutcome::Error(e),
                    Err(Failure::OutOfBudget) => {
                        return ValidateResult {
                            decisions: vec![self.failed(activation::OUT_OF_BUDGET.into())],
                            ..Default::default()
                        };
                    }
                };
                audit_annotations.push(outcome);
            }
            ValidateResult { decisions, audit_annotations }
        })
    }

    /// The message of a failed validation: its messageExpression's string (trimmed, single line, at most 5 KiB),
    /// else its message, else `failed expression: <expression>`.
    fn message(&self, act: &Activation<'_, '_>, v: &Validation) -> Result<String, Failure> {
        let mut message = String::new();
        if let Some(m) = &v.message_expression {
            match act.evaluate(m) {
                Ok(Value::String(s)) => {
                    let s = s.trim();
                    if s.len() <= MAX_MESSAGE_BYTES && !s.contains('\n') {
                        message = s.to_string();
                    }
                }
                Ok(_) => {}
                Err(Failure::OutOfBudget) => return Err(Failure::OutOfBudget),
                Err(Failure::Error(e)) => tracing::debug!(error = e, "error while evaluating messageExpression"),
            }
        }
        if message.is_empty() && !v.message.trim().is_empty() {
            message = v.message.trim().to_string();
        }
        if message.is_empty() {
            message = format!("failed expression: {}", v.expression.source.trim());
        }
        Ok(message)
    }
}

/// A compiled policy as the dispatcher uses it.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    /// `spec.matchConstraints` (None when missing: a configuration error).
    pub match_constraints: Option<super::matcher::MatchResources>,
    /// `spec.paramKind` (apiVersion, kind).
    pub param_kind: Option<(String, String)>,
    pub validator: Validator,
}

impl Policy {
    pub fn compile(obj: &Json) -> Arc<Policy> {
        let spec = &obj["spec"];
        Arc::new(Policy {
            name: crate::registry::meta_str(obj, "name").unwrap_or_default().to_string(),
            match_constraints: spec
                .get("matchConstraints")
                .filter(|m| m.is_object())
                .map(super::matcher::MatchResources::from_json),
            param_kind: spec.get("paramKind").filter(|p| p.is_object()).map(|p| {
                (
                    p["apiVersion"].as_str().unwrap_or_default().to_string(),
                    p["kind"].as_str().unwrap_or_default().to_string(),
                )
            }),
            validator: Validator::compile(spec),
        })
    }
}
