//! Validation of ValidatingAdmissionPolicies, their bindings and the webhooks' matchConditions on create and
//! update (upstream `pkg/apis/admissionregistration/validation/validation.go`), with upstream's field paths and
//! messages; expressions are compiled as the plugin compiles them ([`crate::admission::cel::compile`]).

use std::collections::HashSet;

use api_types::Cause;
use api_types::selector::{LabelSelector, dns1123_subdomain_errors, qualified_name_errors};
use serde_json::{Value, json};

use crate::admission::cel::compile::{Decls, Want, compile};

const MAX_MATCH_CONDITIONS: usize = 64;
const MAX_AUDIT_ANNOTATIONS: usize = 20;
const MAX_AUDIT_ANNOTATION_VALUE_EXPRESSION_LENGTH: usize = 5 * 1024;
const OPERATIONS: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
const SCOPES: &[&str] = &["*", "Cluster", "Namespaced"];
const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];
const MATCH_POLICIES: &[&str] = &["Equivalent", "Exact"];
/// upstream `supportedValidationPolicyReason` (Unauthorized is understood at run time but not accepted here).
const REASONS: &[&str] = &["Forbidden", "Invalid", "RequestEntityTooLarge"];
const ACTIONS: &[&str] = &["Audit", "Deny", "Warn"];

fn required(field: impl Into<String>, detail: &str) -> Cause {
    let message = if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
    Cause { reason: "FieldValueRequired", field: field.into(), message }
}

fn too_many(field: impl Into<String>, n: usize, max: usize) -> Cause {
    Cause {
        reason: "FieldValueTooMany",
        field: field.into(),
        message: format!("Too many: {n}: must have at most {max} items"),
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A policy (upstream `ValidateValidatingAdmissionPolicy` and `...Update`).
pub fn policy(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut causes = Vec::new();
    // On update, unchanged match conditions (and paramKind) are not checked again.
    let ignore_match_conditions = old.is_some_and(|o| {
        o.pointer("/spec/paramKind") == spec.get("paramKind")
            && o.pointer("/spec/matchConditions") == spec.get("matchConditions")
    });
    match spec["failurePolicy"].as_str() {
        None => causes.push(required("spec.failurePolicy", "")),
        Some(f) if !FAILURE_POLICIES.contains(&f) => {
            causes.push(Cause::not_supported("spec.failurePolicy", &json!(f), FAILURE_POLICIES))
        }
        _ => {}
    }
    let params = spec.get("paramKind").is_some_and(Value::is_object);
    if params {
        param_kind(&spec["paramKind"], &mut causes);
    }
    match spec.get("matchConstraints").filter(|m| m.is_object()) {
        None => causes.push(required("spec.matchConstraints", "")),
        Some(mc) => {
            match_resources(mc, "spec.matchConstraints", &mut causes);
            if items(&mc["resourceRules"]).is_empty() {
                causes.push(required("spec.matchConstraints.resourceRules", ""));
            }
        }
    }
    if !ignore_match_conditions {
        match_conditions(&spec["matchConditions"], params, "spec.matchConditions", &mut causes);
    }
    let mut names: Vec<String> = Vec::new();
    for (i, v) in items(&spec["variables"]).iter().enumerate() {
        let path = format!("spec.variables[{i}]");
        let name = v["name"].as_str().unwrap_or_default();
        if name.trim().is_empty() {
            causes.push(required(format!("{path}.name"), "name is not specified"));
        } else if !is_cel_identifier(name) {
            causes.push(Cause::invalid(format!("{path}.name"), &json!(name), "name is not a valid CEL identifier"));
        }
        let expression = v["expression"].as_str().unwrap_or_default();
        if expression.trim().is_empty() {
            causes.push(required(format!("{path}.expression"), "expression is not specified"));
        } else {
            let decls = Decls { params, authorizer: true, variables: Some(&names) };
            if let Some(e) = compile(expression, decls, Want::Any).error() {
                causes.push(Cause::invalid(format!("{path}.expression"), &json!(expression), e));
            }
        }
        names.push(name.to_string());
    }
    let validations = items(&spec["validations"]);
    let audit_annotations = items(&spec["auditAnnotations"]);
    if validations.is_empty() && audit_annotations.is_empty() {
        let why = "validations or auditAnnotations must contain at least one item";
        causes.push(required("spec.validations", why));
        causes.push(required("spec.auditAnnotations", why));
        return causes;
    }
    let decls = Decls { params, authorizer: true, variables: Some(&names) };
    for (i, v) in validations.iter().enumerate() {
        validation(v, decls, &format!("spec.validations[{i}]"), &mut causes);
    }
    if audit_annotations.len() > MAX_AUDIT_ANNOTATIONS {
        causes.push(Cause::invalid(
            "spec.auditAnnotations",
            &spec["auditAnnotations"],
            format!("must not have more than {MAX_AUDIT_ANNOTATIONS} auditAnnotations"),
        ));
    }
    let policy_name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let mut keys = HashSet::new();
    for (i, a) in audit_annotations.iter().enumerate() {
        let path = format!("spec.auditAnnotations[{i}]");
        let key = a["key"].as_str().unwrap_or_default();
        if policy_name.is_empty() {
            causes.push(Cause::invalid(format!("{path}.key"), &json!(key), "requires metadata.name be non-empty"));
        } else {
            let full = format!("{policy_name}/{key}");
            for e in qualified_name_errors(&full) {
                causes.push(Cause::invalid(format!("{path}.key"), &json!(full), e));
            }
        }
        let value = a["valueExpression"].as_str().unwrap_or_default();
        let trimmed = value.trim();
        if trimmed.is_empty() {
            causes.push(required(format!("{path}.valueExpression"), "valueExpression is not specified"));
        } else if trimmed.len() > MAX_AUDIT_ANNOTATION_VALUE_EXPRESSION_LENGTH {
            causes.push(required(
                format!("{path}.valueExpression"),
                &format!("must not exceed {MAX_AUDIT_ANNOTATION_VALUE_EXPRESSION_LENGTH} bytes in length"),
            ));
        } else if let Some(e) = compile(trimmed, decls, Want::StringOrNull).error() {
            causes.push(Cause::invalid(format!("{path}.valueExpression"), &json!(value), e));
        }
        if !keys.insert(key) {
            causes.push(Cause::duplicate(format!("{path}.key"), &json!(key)));
        }
    }
    causes
}

fn validation(v: &Value, decls: Decls<'_>, path: &str, causes: &mut Vec<Cause>) {
    let expression = v["expression"].as_str().unwrap_or_default();
    if expression.trim().is_empty() {
        causes.push(required(format!("{path}.expression"), "expression is not specified"));
    } else if let Some(e) = compile(expression, decls, Want::Bool).error() {
        causes.push(Cause::invalid(format!("{path}.expression"), &json!(expression), e));
    }
    let message_expression = v["messageExpression"].as_str().unwrap_or_default();
    if !message_expression.is_empty() && message_expression.trim().is_empty() {
        causes.push(Cause::invalid(
            format!("{path}.messageExpression"),
            &json!(message_expression),
            "must be non-empty if specified",
        ));
    } else if !message_expression.is_empty() {
        let decls = Decls { authorizer: false, ..decls };
        if let Some(e) = compile(message_expression, decls, Want::String).error() {
            causes.push(Cause::invalid(format!("{path}.messageExpression"), &json!(message_expression), e));
        }
    }
    let message = v["message"].as_str().unwrap_or_default();
    if !message.is_empty() && message.trim().is_empty() {
        causes.push(Cause::invalid(
            format!("{path}.message"),
            &json!(message),
            "message must be non-empty if specified",
        ));
    } else if message.trim().contains(['\n', '\r']) {
        causes.push(Cause::invalid(format!("{path}.message"), &json!(message), "message must not contain line breaks"));
    }
    if let Some(reason) = v.get("reason").filter(|r| !r.is_null())
        && !reason.as_str().is_some_and(|r| REASONS.contains(&r))
    {
        causes.push(Cause::not_supported(format!("{path}.reason"), reason, REASONS));
    }
}

/// upstream `validateParamKind`.
fn param_kind(pk: &Value, causes: &mut Vec<Cause>) {
    let api_version = pk["apiVersion"].as_str().unwrap_or_default();
    if api_version.is_empty() {
        causes.push(required("spec.paramKind.apiVersion", ""));
    } else {
        let (group, version) = match api_version.matches('/').count() {
            0 => ("", api_version),
            1 => api_version.split_once('/').unwrap_or_default(),
            _ => {
                causes.push(Cause::invalid(
                    "spec.paramKind.apiVersion",
                    &json!(api_version),
                    format!("unexpected GroupVersion string: {api_version}"),
                ));
                ("", "")
            }
        };
        if !group.is_empty() {
            let errs = dns1123_subdomain_errors(group);
            if !errs.is_empty() {
                causes.push(Cause::invalid("spec.paramKind.apiVersion", &json!(group), errs.join(",")));
            }
        }
        if version.is_empty() && api_version.matches('/').count() < 2 {
            causes.push(Cause::invalid("spec.paramKind.apiVersion", &json!(api_version), "version must be specified"));
        } else if !version.is_empty() && !crate::validation::is_dns1035_label(version) {
            causes.push(Cause::invalid("spec.paramKind.apiVersion", &json!(version), dns1035_message()));
        }
    }
    let kind = pk["kind"].as_str().unwrap_or_default();
    if kind.is_empty() {
        causes.push(required("spec.paramKind.kind", ""));
    } else if !crate::validation::is_dns1035_label(&kind.to_lowercase()) {
        causes.push(Cause::invalid(
            "spec.paramKind.kind",
            &json!(kind),
            format!("may have mixed case, but should otherwise match: {}", dns1035_message()),
        ));
    }
}

fn dns1035_message() -> &'static str {
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
}

/// upstream `validateMatchResources`.
fn match_resources(mc: &Value, path: &str, causes: &mut Vec<Cause>) {
    match mc["matchPolicy"].as_str() {
        None => causes.push(required(format!("{path}.matchPolicy"), "")),
        Some(p) if !MATCH_POLICIES.contains(&p) => {
            causes.push(Cause::not_supported(format!("{path}.matchPolicy"), &json!(p), MATCH_POLICIES))
        }
        _ => {}
    }
    for sel in ["namespaceSelector", "objectSelector"] {
        match mc.get(sel).filter(|s| !s.is_null()) {
            None => causes.push(required(format!("{path}.{sel}"), "")),
            Some(s) => label_selector(s, &format!("{path}.{sel}"), causes),
        }
    }
    for rules in ["resourceRules", "excludeResourceRules"] {
        for (i, r) in items(&mc[rules]).iter().enumerate() {
            named_rule(r, &format!("{path}.{rules}[{i}]"), causes);
        }
    }
}

fn label_selector(s: &Value, path: &str, causes: &mut Vec<Cause>) {
    if let Err(e) = LabelSelector::from_json(s) {
        causes.push(Cause::invalid(path, s, e.to_string()));
    }
}

/// upstream `validateNamedRuleWithOperations`.
fn named_rule(r: &Value, path: &str, causes: &mut Vec<Cause>) {
    let mut seen = HashSet::new();
    for (i, name) in strings(&r["resourceNames"]).into_iter().enumerate() {
        let field = format!("{path}.resourceNames[{i}]");
        if name == "." || name == ".." {
            causes.push(Cause::invalid(&field, &json!(name), format!("may not be '{name}'")));
        }
        for bad in ["/", "%"] {
            if name.contains(bad) {
                causes.push(Cause::invalid(&field, &json!(name), format!("may not contain '{bad}'")));
            }
        }
        if !seen.insert(name) {
            causes.push(Cause::duplicate(&field, &json!(name)));
        }
    }
    rule_with_operations(r, path, causes);
}

/// upstream `validateRuleWithOperations` (with subresources allowed).
pub fn rule_with_operations(r: &Value, path: &str, causes: &mut Vec<Cause>) {
    let ops = strings(&r["operations"]);
    if ops.is_empty() {
        causes.push(required(format!("{path}.operations"), ""));
    }
    if ops.len() > 1 && ops.contains(&"*") {
        causes.push(Cause::invalid(
            format!("{path}.operations"),
            &r["operations"],
            "if '*' is present, must not specify other operations",
        ));
    }
    for (i, op) in ops.iter().enumerate() {
        if !OPERATIONS.contains(op) {
            causes.push(Cause::not_supported(format!("{path}.operations[{i}]"), &json!(op), OPERATIONS));
        }
    }
    let groups = strings(&r["apiGroups"]);
    if groups.is_empty() {
        causes.push(required(format!("{path}.apiGroups"), ""));
    }
    if groups.len() > 1 && groups.contains(&"*") {
        causes.push(Cause::invalid(
            format!("{path}.apiGroups"),
            &r["apiGroups"],
            "if '*' is present, must not specify other API groups",
        ));
    }
    let versions = strings(&r["apiVersions"]);
    if versions.is_empty() {
        causes.push(required(format!("{path}.apiVersions"), ""));
    }
    if versions.len() > 1 && versions.contains(&"*") {
        causes.push(Cause::invalid(
            format!("{path}.apiVersions"),
            &r["apiVersions"],
            "if '*' is present, must not specify other API versions",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if v.is_empty() {
            causes.push(required(format!("{path}.apiVersions[{i}]"), ""));
        }
    }
    resources(&r["resources"], &format!("{path}.resources"), causes);
    if let Some(scope) = r.get("scope").filter(|s| !s.is_null())
        && !scope.as_str().is_some_and(|s| SCOPES.contains(&s))
    {
        causes.push(Cause::not_supported(format!("{path}.scope"), scope, SCOPES));
    }
}

/// upstream `validateResources`.
fn resources(v: &Value, path: &str, causes: &mut Vec<Cause>) {
    let list = strings(v);
    if list.is_empty() {
        causes.push(required(path, ""));
    }
    let (mut with_wildcard_sub, mut sub_with_wildcard_res) = (HashSet::new(), HashSet::new());
    let (mut double, mut single, mut plain) = (false, false, false);
    for (i, rs) in list.iter().enumerate() {
        if rs.is_empty() {
            causes.push(required(format!("{path}[{i}]"), ""));
            continue;
        }
        double |= *rs == "*/*";
        single |= *rs == "*";
        let Some((res, sub)) = rs.split_once('/') else {
            plain = *rs != "*";
            continue;
        };
        if with_wildcard_sub.contains(res) {
            causes.push(Cause::invalid(
                format!("{path}[{i}]"),
                &json!(rs),
                format!("if '{res}/*' is present, must not specify {rs}"),
            ));
        }
        if sub_with_wildcard_res.contains(sub) {
            causes.push(Cause::invalid(
                format!("{path}[{i}]"),
                &json!(rs),
                format!("if '*/{sub}' is present, must not specify {rs}"),
            ));
        }
        if sub == "*" {
            with_wildcard_sub.insert(res);
        }
        if res == "*" {
            sub_with_wildcard_res.insert(sub);
        }
    }
    if list.len() > 1 && double {
        causes.push(Cause::invalid(path, v, "if '*/*' is present, must not specify other resources"));
    }
    if single && plain {
        causes.push(Cause::invalid(
            path,
            v,
            "if '*' is present, must not specify other resources without subresources",
        ));
    }
}

/// upstream `validateMatchConditions`: at most 64, unique names, expressions that compile (`params` declared for
/// policies with a paramKind; `variables` never, as upstream's stateless compiler).
pub fn match_conditions(v: &Value, params: bool, path: &str, causes: &mut Vec<Cause>) {
    let conditions = items(v);
    if conditions.len() > MAX_MATCH_CONDITIONS {
        causes.push(too_many(path, conditions.len(), MAX_MATCH_CONDITIONS));
    }
    let mut names = HashSet::new();
    for (i, c) in conditions.iter().enumerate() {
        let expression = c["expression"].as_str().unwrap_or_default().trim();
        if expression.is_empty() {
            causes.push(required(format!("{path}[{i}].expression"), ""));
        } else {
            let decls = Decls { params, authorizer: true, variables: None };
            if let Some(e) = compile(expression, decls, Want::Bool).error() {
                causes.push(Cause::invalid(format!("{path}[{i}].expression"), &json!(expression), e));
            }
        }
        let name = c["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            causes.push(required(format!("{path}[{i}].name"), ""));
        } else {
            for e in qualified_name_errors(name) {
                causes.push(Cause::invalid(format!("{path}[{i}].name"), &json!(name), e));
            }
            if !names.insert(name) {
                causes.push(Cause::duplicate(format!("{path}[{i}].name"), &json!(name)));
            }
        }
    }
}

fn is_cel_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !crate::apiextensions::cel::escaping::RESERVED.contains(&name)
}

/// A binding (upstream `ValidateValidatingAdmissionPolicyBinding`).
pub fn binding(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut causes = Vec::new();
    let policy = spec["policyName"].as_str().unwrap_or_default();
    if policy.is_empty() {
        causes.push(required("spec.policyName", ""));
    } else if !crate::validation::is_dns1123_subdomain(policy) {
        for e in dns1123_subdomain_errors(policy) {
            causes.push(Cause::invalid("spec.policyName", &json!(policy), e));
        }
    }
    if let Some(pr) = spec.get("paramRef").filter(|p| p.is_object()) {
        param_ref(pr, &mut causes);
    }
    if let Some(mr) = spec.get("matchResources").filter(|m| m.is_object()) {
        // upstream's field path has this spelling.
        match_resources(mr, "spec.matchResouces", &mut causes);
    }
    let actions = strings(&spec["validationActions"]);
    let mut seen = HashSet::new();
    for (i, a) in actions.iter().enumerate() {
        let field = format!("spec.validationActions[{i}]");
        if !ACTIONS.contains(a) {
            causes.push(Cause::not_supported(&field, &json!(a), ACTIONS));
        }
        if !seen.insert(*a) {
            causes.push(Cause::duplicate(&field, &json!(a)));
        }
    }
    if seen.contains("Deny") && seen.contains("Warn") {
        causes.push(Cause::invalid(
            "spec.validationActions",
            &spec["validationActions"],
            "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
        ));
    }
    if seen.is_empty() {
        causes.push(required("spec.validationActions", "at least one validation action is required"));
    }
    causes
}

/// upstream `validateParamRef`.
fn param_ref(pr: &Value, causes: &mut Vec<Cause>) {
    let name = pr["name"].as_str().unwrap_or_default();
    let selector = pr.get("selector").filter(|s| !s.is_null());
    if !name.is_empty() {
        if name == "." || name == ".." {
            causes.push(Cause::invalid("spec.paramRef.name", &json!(name), format!("may not be '{name}'")));
        }
        for bad in ["/", "%"] {
            if name.contains(bad) {
                causes.push(Cause::invalid("spec.paramRef.name", &json!(name), format!("may not contain '{bad}'")));
            }
        }
        if selector.is_some() {
            causes.push(Cause::forbidden("spec.paramRef.name", "name and selector are mutually exclusive"));
        }
    }
    if let Some(s) = selector {
        label_selector(s, "spec.paramRef.selector", causes);
        if !name.is_empty() {
            causes.push(Cause::forbidden("spec.paramRef.selector", "name and selector are mutually exclusive"));
        }
    }
    if name.is_empty() && selector.is_none() {
        causes.push(required("spec.paramRef", "one of name or selector must be specified"));
    }
    match pr["parameterNotFoundAction"].as_str().filter(|a| !a.is_empty()) {
        None => causes.push(required("spec.paramRef.parameterNotFoundAction", "")),
        Some(a) if a != "Deny" && a != "Allow" => {
            causes.push(Cause::not_supported("spec.paramRef.parameterNotFoundAction", &json!(a), &["Deny", "Allow"]))
        }
        _ => {}
    }
}

/// A policy's status on a status update (upstream `ValidateValidatingAdmissionPolicyStatusUpdate`).
pub fn status(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, w) in items(&obj["status"]["typeChecking"]["expressionWarnings"]).iter().enumerate() {
        let path = format!("status.typeChecking.expressionWarnings[{i}]");
        if w["warning"].as_str().unwrap_or_default().is_empty() {
            causes.push(required(format!("{path}.warning"), ""));
        }
        if w["fieldRef"].as_str().unwrap_or_default().trim().is_empty() {
            causes.push(required(format!("{path}.fieldRef"), ""));
        }
    }
    causes
}

/// The matchConditions of a webhook configuration's webhooks (the rest of the webhook fields are not validated
/// here). On update, unchanged conditions are not checked again, as upstream.
pub fn webhook_configuration(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let hooks = items(&obj["webhooks"]);
    if let Some(old) = old {
        let before = items(&old["webhooks"]);
        if before.len() == hooks.len()
            && before.iter().zip(hooks).all(|(a, b)| a["matchConditions"] == b["matchConditions"])
        {
            return Vec::new();
        }
    }
    let mut causes = Vec::new();
    for (i, h) in hooks.iter().enumerate() {
        match_conditions(&h["matchConditions"], false, &format!("webhooks[{i}].matchConditions"), &mut causes);
    }
    causes
}
