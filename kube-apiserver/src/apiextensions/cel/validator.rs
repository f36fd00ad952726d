//! The rule validator of a CRD version (upstream `schema/cel/validation.go`): a tree parallel to the structural
//! schema holding the compiled rules of every node (and of its `allOf` branches), built once per served version.
//! Validation walks a custom resource along it with `self` bound at each rule's node (properties, items,
//! additionalProperties), `oldSelf` bound to the correlated old value on update (by property, by map key, and by
//! key for `x-kubernetes-list-type: map` items; transition rules are skipped where there is none), under a cost
//! budget per object; errors are upstream's field errors, and failures of unchanged values are ratcheted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use kube_cel::cel::Value;
use kube_cel::cel::objects::OptionalValue;
use serde_json::Value as Json;

use super::compile::{CompiledRule, OLD_SELF, Program, SELF, compile_rules};
use super::library::{self, COST_EXCEEDED, EVALUATION_DEADLINE, PER_CALL_LIMIT, RUNTIME_COST_BUDGET};
use super::values::to_cel;
use crate::apiextensions::schema::field::{FieldError, child, index, key};
use crate::apiextensions::schema::structural::{NestedValueValidation, Structural};

/// upstream `celconfig.MaxEvaluatedMessageExpressionSizeBytes`.
const MAX_MESSAGE_EXPRESSION_BYTES: usize = 5 * 1024;

/// Where rules come from: a schema node, or a nested value validation under `allOf` (checked against the node).
#[derive(Clone, Copy)]
pub enum Rules<'a> {
    Schema(&'a Structural),
    Nested(&'a NestedValueValidation),
}

impl<'a> Rules<'a> {
    pub fn validations(self) -> &'a [Json] {
        match self {
            Rules::Schema(s) => &s.extensions.validations,
            Rules::Nested(n) => &n.forbidden_extensions.validations,
        }
    }

    pub fn items(self) -> Option<Rules<'a>> {
        match self {
            Rules::Schema(s) => s.items.as_deref().map(Rules::Schema),
            Rules::Nested(n) => n.items.as_deref().map(Rules::Nested),
        }
    }

    pub fn properties(self) -> Vec<(&'a String, Rules<'a>)> {
        match self {
            Rules::Schema(s) => s.properties.iter().map(|(k, v)| (k, Rules::Schema(v))).collect(),
            Rules::Nested(n) => n.properties.iter().map(|(k, v)| (k, Rules::Nested(v))).collect(),
        }
    }

    pub fn additional_properties(self) -> Option<Rules<'a>> {
        match self {
            Rules::Schema(s) => {
                s.generic.additional_properties.as_ref().and_then(|a| a.structural.as_deref()).map(Rules::Schema)
            }
            Rules::Nested(n) => n.additional_properties.as_deref().map(Rules::Nested),
        }
    }

    pub fn all_of(self) -> &'a [NestedValueValidation] {
        match self {
            Rules::Schema(s) => &s.value_validation.all_of,
            Rules::Nested(n) => &n.value_validation.all_of,
        }
    }
}

/// The compiled rules of one node and of everything below it that has rules.
#[derive(Debug)]
pub struct Validator {
    rules: Vec<CompiledRule>,
    /// The node's schema, to convert values (kept only by nodes with rules).
    schema: Option<Arc<Structural>>,
    type_: String,
    resource_root: bool,
    /// `x-kubernetes-list-map-keys` of a `map` list: the key old items are correlated by.
    list_map_keys: Option<Vec<String>>,
    properties: BTreeMap<String, Validator>,
    items: Option<Box<Validator>>,
    additional_properties: Option<Box<Validator>>,
    all_of: Vec<Validator>,
}

impl Validator {
    /// Compiles every rule of a CRD version's schema; None when it has none.
    pub fn new(root: &Structural) -> Option<Validator> {
        Self::build(Rules::Schema(root), root, true)
    }

    fn build(rules: Rules<'_>, node: &Structural, resource_root: bool) -> Option<Validator> {
        let compiled = compile_rules(node, resource_root, rules.validations());
        let items = match (rules.items(), node.items.as_deref()) {
            (Some(r), Some(n)) => Self::build(r, n, n.extensions.embedded_resource).map(Box::new),
            _ => None,
        };
        let mut properties = BTreeMap::new();
        for (k, r) in rules.properties() {
            if let Some(n) = node.properties.get(k)
                && let Some(v) = Self::build(r, n, n.extensions.embedded_resource)
            {
                properties.insert(k.clone(), v);
            }
        }
        let node_additional = node.generic.additional_properties.as_ref().and_then(|a| a.structural.as_deref());
        let additional_properties = match (rules.additional_properties(), node_additional) {
            (Some(r), Some(n)) => Self::build(r, n, n.extensions.embedded_resource).map(Box::new),
            _ => None,
        };
        let all_of: Vec<Validator> =
            rules.all_of().iter().filter_map(|n| Self::build(Rules::Nested(n), node, resource_root)).collect();
        if compiled.is_empty()
            && items.is_none()
            && properties.is_empty()
            && additional_properties.is_none()
            && all_of.is_empty()
        {
            return None;
        }
        let list_map_keys =
            (node.extensions.list_type.as_deref() == Some("map")).then(|| node.extensions.list_map_keys.clone());
        Some(Validator {
            schema: (!compiled.is_empty()).then(|| Arc::new(node.clone())),
            rules: compiled,
            type_: node.generic.type_.clone(),
            resource_root,
            list_map_keys,
            properties,
            items,
            additional_properties,
            all_of,
        })
    }

    /// Validates a custom resource (and its previous state on update) against every rule.
    pub fn validate(&self, obj: &Json, old: Option<&Json>) -> Vec<FieldError> {
        let mut st = State {
            remaining: RUNTIME_COST_BUDGET,
            deadline: Instant::now() + EVALUATION_DEADLINE,
            errors: Vec::new(),
        };
        let ratchet = old.map(|o| (obj, o));
        self.walk("", obj, old, ratchet, &mut st);
        st.errors
    }

    /// Returns false once the budget is spent (no further rules run).
    fn walk<'v>(
        &self,
        path: &str,
        obj: &'v Json,
        old: Option<&'v Json>,
        ratchet: Option<(&'v Json, &'v Json)>,
        st: &mut State,
    ) -> bool {
        if obj.is_null() {
            return true;
        }
        let old = old.filter(|o| !o.is_null());
        // The nearest correlated (new, old) pair: an unchanged one ratchets this node's failures.
        let ratchet = match old {
            Some(o) => Some((obj, o)),
            None => ratchet,
        };
        if !self.rules.is_empty() && !self.expressions(path, obj, old, ratchet, st) {
            return false;
        }
        for v in &self.all_of {
            if !v.walk(path, obj, old, ratchet, st) {
                return false;
            }
        }
        match obj {
            Json::Array(items) => {
                let Some(iv) = &self.items else { return true };
                let old_items = old.and_then(Json::as_array);
                for (i, item) in items.iter().enumerate() {
                    let old_item = match (&self.list_map_keys, old_items) {
                        (Some(keys), Some(olds)) => olds.iter().find(|o| same_keys(keys, o, item)),
                        _ => None,
                    };
                    if !iv.walk(&index(path, i), item, old_item, ratchet, st) {
                        return false;
                    }
                }
            }
            Json::Object(m) => {
                let old_map = old.and_then(Json::as_object);
                if let Some(av) = &self.additional_properties {
                    for (k, v) in m {
                        if !av.walk(&key(path, k), v, old_map.and_then(|o| o.get(k)), ratchet, st) {
                            return false;
                        }
                    }
                }
                for (k, v) in m {
                    if let Some(pv) = self.properties.get(k)
                        && !pv.walk(&child(path, k), v, old_map.and_then(|o| o.get(k)), ratchet, st)
                    {
                        return false;
                    }
                }
            }
            _ => {}
        }
        true
    }

    /// Evaluates this node's rules; false when the budget ran out.
    fn expressions(
        &self,
        path: &str,
        obj: &Json,
        old: Option<&Json>,
        ratchet: Option<(&Json, &Json)>,
        st: &mut State,
    ) -> bool {
        let ty = Json::String(self.type_.clone());
        let Some(schema) = &self.schema else { return true };
        if st.remaining <= 0 {
            st.errors.push(FieldError::invalid(path, ty, OUT_OF_BUDGET));
            return false;
        }
        let this = to_cel(obj, schema, self.resource_root);
        let old_value = match old {
            Some(o) if self.rules.iter().any(|r| r.uses_old_self) => Some(to_cel(o, schema, self.resource_root)),
            _ => None,
        };
        for compiled in &self.rules {
            if let Some(e) = &compiled.error {
                st.errors.push(FieldError::invalid(path, ty.clone(), format!("rule compile error: {e}")));
                continue;
            }
            let Some(program) = &compiled.program else { continue };
            let optional_old_self = compiled.rule.optional_old_self == Some(true);
            if compiled.uses_old_self && old_value.is_none() && !optional_old_self {
                // Transition rules run only where there is a value to compare with.
                continue;
            }
            let mut vars = vec![(SELF, this.clone())];
            match (&old_value, optional_old_self) {
                (Some(o), false) => vars.push((OLD_SELF, o.clone())),
                (Some(o), true) => vars.push((OLD_SELF, Value::Opaque(Arc::new(OptionalValue::of(o.clone()))))),
                (None, true) => vars.push((OLD_SELF, Value::Opaque(Arc::new(OptionalValue::none())))),
                (None, false) => {}
            }
            let limit = PER_CALL_LIMIT.min(st.remaining as u64);
            let eval = library::evaluate(&program.expr, program.static_cost, &vars, limit, Some(st.deadline));
            st.remaining -= eval.cost as i64;
            if eval.exceeded {
                let detail = if limit < PER_CALL_LIMIT {
                    OUT_OF_BUDGET.to_string()
                } else {
                    format!(
                        "'{COST_EXCEEDED}': no further validation rules will be run due to call cost exceeds limit for rule: {}",
                        compiled.rule.error_string()
                    )
                };
                st.errors.push(FieldError::invalid(path, ty, detail));
                st.remaining = -1;
                return false;
            }
            match eval.result {
                Ok(Value::Bool(true)) => continue,
                Ok(_) => {}
                Err(e) => {
                    let text = library::error_text(&e);
                    let detail = if text.starts_with("no such overload") {
                        format!(
                            "'{text}': call arguments did not match a supported operator, function or macro signature for rule: {}",
                            compiled.rule.error_string()
                        )
                    } else {
                        format!("{text} evaluating rule: {}", compiled.rule.error_string())
                    };
                    st.errors.push(FieldError::invalid(path, ty.clone(), detail));
                    continue;
                }
            }
            let at = if compiled.normalized_field_path.is_empty() {
                path.to_string()
            } else {
                child(path, &compiled.normalized_field_path)
            };
            let detail = match &compiled.message_expression {
                Some(m) => match message(m, &vars, st) {
                    Message::Text(t) => t,
                    Message::Fallback => default_message(compiled),
                    Message::OutOfBudget(detail) => {
                        st.errors.push(FieldError::invalid(&at, ty, detail));
                        return false;
                    }
                },
                None => default_message(compiled),
            };
            let unchanged = ratchet.is_some_and(|(new, old)| new == old);
            if !compiled.uses_old_self && unchanged {
                // CRDValidationRatcheting: an unchanged value keeps passing (upstream warns instead).
                continue;
            }
            st.errors.push(error_for_reason(&at, ty.clone(), detail, compiled.rule.reason.as_deref()));
        }
        true
    }
}

const OUT_OF_BUDGET: &str =
    "validation failed due to running out of cost budget, no further validation rules will be run";

struct State {
    remaining: i64,
    deadline: Instant,
    errors: Vec<FieldError>,
}

enum Message {
    Text(String),
    /// Evaluation failed or gave an unusable string: the static message (or default) is used.
    Fallback,
    OutOfBudget(String),
}

/// upstream `evalMessageExpression`.
fn message(m: &Program, vars: &[(&str, Value)], st: &mut State) -> Message {
    let limit = PER_CALL_LIMIT.min(st.remaining.max(0) as u64);
    let eval = library::evaluate(&m.expr, m.static_cost, vars, limit, Some(st.deadline));
    st.remaining -= eval.cost as i64;
    if eval.exceeded {
        st.remaining = -1;
        return Message::OutOfBudget(
            "messageExpression evaluation failed due to running out of cost budget, no further validation rules will be run"
                .into(),
        );
    }
    match eval.result {
        Ok(Value::String(s)) => {
            let trimmed = s.trim();
            if trimmed.is_empty() || trimmed.len() > MAX_MESSAGE_EXPRESSION_BYTES || trimmed.contains('\n') {
                tracing::debug!(len = trimmed.len(), "messageExpression result unusable");
                Message::Fallback
            } else {
                Message::Text(trimmed.to_string())
            }
        }
        Ok(_) => Message::Fallback,
        Err(e) => {
            tracing::debug!(error = %library::error_text(&e), "messageExpression evaluation failed");
            Message::Fallback
        }
    }
}

/// upstream `ruleMessageOrDefault`.
fn default_message(c: &CompiledRule) -> String {
    if c.rule.message.is_empty() {
        format!("failed rule: {}", c.rule.error_string())
    } else {
        c.rule.message.trim().to_string()
    }
}

/// upstream `fieldErrorForReason`.
fn error_for_reason(path: &str, ty: Json, detail: String, reason: Option<&str>) -> FieldError {
    match reason {
        Some("FieldValueForbidden") => FieldError::forbidden(path, detail),
        Some("FieldValueRequired") => FieldError::required(path, detail),
        Some("FieldValueDuplicate") => FieldError::duplicate(path, ty),
        _ => FieldError::invalid(path, ty, detail),
    }
}

/// Two `map`-list items with the same values of every key.
fn same_keys(keys: &[String], a: &Json, b: &Json) -> bool {
    keys.iter().all(|k| a.get(k) == b.get(k))
}

#[cfg(test)]
mod tests;
