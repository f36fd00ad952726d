//! The checks a CRD's `x-kubernetes-validations` must pass to be accepted (upstream
//! `apis/apiextensions/validation/validation.go`): a rule is specified, message/messageExpression/fieldPath are
//! well-formed, reason is supported, every rule and messageExpression compiles, transition rules stay on the
//! correlatable part of the schema, `optionalOldSelf` only with `oldSelf`. Errors are upstream's 422 causes.

use api_types::Cause;
use serde_json::{Value as Json, json};

use super::compile::{Rule, compile_rules, valid_field_path};
use super::validator::Rules;
use crate::apiextensions::schema::field::{FieldError, child, index, key};
use crate::apiextensions::schema::structural::Structural;

/// upstream `supportedValidationReason`, sorted as `sets.List` prints it.
const REASONS: &[&str] = &["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"];

/// The causes for the rules of a version's schema at `path` (`spec.versions[0].schema.openAPIV3Schema`).
pub fn validate_rules(path: &str, root: &Structural) -> Vec<Cause> {
    let mut out = Vec::new();
    walk(path, Rules::Schema(root), root, true, None, &mut out);
    out
}

fn walk(
    path: &str,
    rules: Rules<'_>,
    node: &Structural,
    resource_root: bool,
    uncorrelatable: Option<&str>,
    out: &mut Vec<Cause>,
) {
    node_rules(path, rules, node, resource_root, uncorrelatable, out);
    for (k, r) in rules.properties() {
        if let Some(n) = node.properties.get(k) {
            let at = key(&child(path, "properties"), k);
            walk(&at, r, n, n.extensions.embedded_resource, uncorrelatable, out);
        }
    }
    if let (Some(r), Some(n)) = (rules.items(), node.items.as_deref()) {
        // Items of anything but a map list cannot be correlated with their old values.
        let within = match uncorrelatable {
            Some(p) => Some(p.to_string()),
            None if node.extensions.list_type.as_deref() != Some("map") => Some(path.to_string()),
            None => None,
        };
        walk(&child(path, "items"), r, n, n.extensions.embedded_resource, within.as_deref(), out);
    }
    let node_additional = node.generic.additional_properties.as_ref().and_then(|a| a.structural.as_deref());
    if let (Some(r), Some(n)) = (rules.additional_properties(), node_additional) {
        walk(&child(path, "additionalProperties"), r, n, n.extensions.embedded_resource, uncorrelatable, out);
    }
    for (i, nested) in rules.all_of().iter().enumerate() {
        let at = index(&child(path, "allOf"), i);
        walk(&at, Rules::Nested(nested), node, resource_root, uncorrelatable, out);
    }
}

fn node_rules(
    path: &str,
    rules: Rules<'_>,
    node: &Structural,
    resource_root: bool,
    uncorrelatable: Option<&str>,
    out: &mut Vec<Cause>,
) {
    let raw = rules.validations();
    if raw.is_empty() {
        return;
    }
    let base = child(path, "x-kubernetes-validations");
    let mut schema_errors = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let r = Rule::from_json(v);
        let at = |f: &str| child(&index(&base, i), f);
        let trimmed_message = r.message.trim();
        if r.rule.trim().is_empty() {
            schema_errors.push(FieldError::required(&at("rule"), "rule is not specified"));
        } else if !r.message.is_empty() && trimmed_message.is_empty() {
            schema_errors.push(FieldError::invalid(
                &at("message"),
                json!(r.message),
                "message must be non-empty if specified",
            ));
        } else if has_newlines(trimmed_message) {
            schema_errors.push(FieldError::invalid(
                &at("message"),
                json!(r.message),
                "message must not contain line breaks",
            ));
        } else if has_newlines(r.rule.trim()) && trimmed_message.is_empty() {
            schema_errors
                .push(FieldError::required(&at("message"), "message must be specified if rule contains line breaks"));
        }
        if !r.message_expression.is_empty() && r.message_expression.trim().is_empty() {
            schema_errors.push(FieldError::required(
                &at("messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
        if let Some(reason) = &r.reason
            && !REASONS.contains(&reason.as_str())
        {
            let supported: Vec<String> = REASONS.iter().map(|s| s.to_string()).collect();
            schema_errors.push(FieldError::not_supported(&at("reason"), json!(reason), &supported));
        }
        if !r.field_path.is_empty() && r.field_path.trim().is_empty() {
            schema_errors.push(FieldError::invalid(
                &at("fieldPath"),
                json!(r.field_path),
                "fieldPath must be non-empty if specified",
            ));
        }
        if has_newlines(&r.field_path) {
            schema_errors.push(FieldError::invalid(
                &at("fieldPath"),
                json!(r.field_path),
                "fieldPath must not contain line breaks",
            ));
        }
        if !r.field_path.is_empty() && valid_field_path(&r.field_path, node).is_err() {
            schema_errors.push(FieldError::invalid(
                &at("fieldPath"),
                json!(r.field_path),
                "fieldPath must be a valid path",
            ));
        }
    }
    out.extend(schema_errors.iter().map(FieldError::to_cause));
    if !schema_errors.is_empty() {
        // Rules are compiled only once the schema around them is valid, as upstream.
        return;
    }
    for (i, c) in compile_rules(node, resource_root, raw).iter().enumerate() {
        let at = |f: &str| child(&index(&base, i), f);
        let invalid_rule = |detail: &str| Cause {
            reason: "FieldValueInvalid",
            field: at("rule"),
            message: format!("Invalid value: {}: {detail}", c.rule.go_sharp_v()),
        };
        if let Some(e) = &c.error {
            out.push(invalid_rule(e));
        }
        if let Some(e) = &c.message_expression_error {
            out.push(Cause {
                reason: "FieldValueInvalid",
                field: at("messageExpression"),
                message: format!("Invalid value: {}: {e}", c.rule.go_sharp_v()),
            });
        }
        if c.uses_old_self {
            if let Some(within) = uncorrelatable {
                let detail =
                    format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {within}");
                out.push(FieldError::invalid(&at("rule"), json!(c.rule.rule), detail).to_cause());
            }
        } else if let Some(v) = c.rule.optional_old_self
            && c.error.is_none()
        {
            let e = FieldError::invalid(
                &at("optionalOldSelf"),
                Json::Bool(v),
                "may not be set if oldSelf is not used in rule",
            );
            out.push(e.to_cause());
        }
    }
}

/// upstream `hasNewlines`: `[\n\r]+`.
fn has_newlines(s: &str) -> bool {
    s.contains(['\n', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(schema: Json) -> Vec<String> {
        let s = Structural::new(&schema).unwrap();
        validate_rules("spec.versions[0].schema.openAPIV3Schema", &s)
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn invalid_rules_are_refused_with_upstream_messages() {
        let got = causes(json!({"type": "object", "properties": {"spec": {"type": "object",
        "properties": {"x": {"type": "integer"}, "l": {"type": "array", "items": {"type": "string",
            "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}},
        "x-kubernetes-validations": [
            {"rule": "self.x >"},
            {"rule": "self.x > 0", "reason": "Bogus"},
            {"rule": "self.x > 0", "messageExpression": "42"},
            {"rule": "self.x > 0", "optionalOldSelf": true},
            {"rule": "self.x > 0", "fieldPath": ".nope"},
            {"rule": " "},
        ]}}}));
        let p = "spec.versions[0].schema.openAPIV3Schema.properties[spec]";
        assert_eq!(
            got,
            [
                format!(
                    "{p}.x-kubernetes-validations[1].reason: Unsupported value: \"Bogus\": supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""
                ),
                format!(
                    "{p}.x-kubernetes-validations[4].fieldPath: Invalid value: \".nope\": fieldPath must be a valid path"
                ),
                format!("{p}.x-kubernetes-validations[5].rule: Required value: rule is not specified"),
                format!(
                    "{p}.properties[l].items.x-kubernetes-validations[0].rule: Invalid value: \"self == oldSelf\": oldSelf cannot be used on the uncorrelatable portion of the schema within {p}.properties[l]"
                ),
            ]
        );
        // Without the schema errors, compilation runs.
        let got = causes(json!({"type": "object", "properties": {"spec": {"type": "object",
        "properties": {"x": {"type": "integer"}},
        "x-kubernetes-validations": [
            {"rule": "self.x >"},
            {"rule": "self.x > 0", "messageExpression": "42"},
            {"rule": "self.x > 0", "optionalOldSelf": true},
        ]}}}));
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[0].starts_with(&format!("{p}.x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{{Rule:\"self.x >\", Message:\"\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}}: compilation failed: ERROR: <input>:1:9: Syntax error: mismatched input '<EOF>'")), "{}", got[0]);
        assert!(
            got[1].starts_with(&format!(
                "{p}.x-kubernetes-validations[1].messageExpression: Invalid value: apiextensions.ValidationRule{{"
            )),
            "{}",
            got[1]
        );
        assert!(got[1].ends_with("messageExpression must evaluate to a string"), "{}", got[1]);
        assert_eq!(
            got[2],
            format!(
                "{p}.x-kubernetes-validations[2].optionalOldSelf: Invalid value: true: may not be set if oldSelf is not used in rule"
            )
        );
        assert!(
            causes(
                json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('a')"}]})
            )
            .is_empty()
        );
    }
}
