//! Compilation of `x-kubernetes-validations` rules (upstream `schema/cel/compilation.go`): each rule and
//! `messageExpression` is parsed once, checked against the environment and the schema of the node that holds it
//! (undeclared identifiers and functions, fields the schema does not declare, constant regexes, durations and
//! timestamps, a non-bool rule or non-string message), marked as a transition rule when it names `oldSelf`, and
//! instrumented for the runtime cost budget. Errors carry cel-go's text (`compilation failed: ERROR: <input>:1:6:
//! undefined field 'x'` with the source snippet).
//!
//! The interpreter has no type checker, so checking is structural: it follows `self`/`oldSelf` and comprehension
//! variables through selections and indexing, which is where upstream's checker rejects most rules.

use kube_cel::cel::IdedExpr;
use kube_cel::cel::common::ast::{CallExpr, EntryExpr, Expr, LiteralValue};
use kube_cel::cel::parser::{Expression, Parser};
use serde_json::Value as Json;

use super::escaping::unescape;
use super::library::{COST_FUNCTION, FUNCTIONS};
use crate::apiextensions::schema::structural::Structural;

/// upstream `ScopedVarName` and `OldScopedVarName`.
pub const SELF: &str = "self";
pub const OLD_SELF: &str = "oldSelf";

/// One `x-kubernetes-validations` entry as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    pub rule: String,
    pub message: String,
    pub message_expression: String,
    pub reason: Option<String>,
    pub field_path: String,
    pub optional_old_self: Option<bool>,
}

impl Rule {
    pub fn from_json(v: &Json) -> Rule {
        let s = |k: &str| v.get(k).and_then(Json::as_str).unwrap_or_default().to_string();
        Rule {
            rule: s("rule"),
            message: s("message"),
            message_expression: s("messageExpression"),
            reason: v.get("reason").and_then(Json::as_str).map(str::to_string),
            field_path: s("fieldPath"),
            optional_old_self: v.get("optionalOldSelf").and_then(Json::as_bool),
        }
    }

    /// The rule as Go's `%#v` prints upstream's internal `ValidationRule` (the bad value of a compile error).
    pub fn go_sharp_v(&self) -> String {
        use crate::apiextensions::schema::field::go_quote;
        let reason = match &self.reason {
            None => "(*apiextensions.FieldValueErrorReason)(nil)".to_string(),
            Some(_) => "(*apiextensions.FieldValueErrorReason)(0xc000000000)".to_string(),
        };
        let old = match self.optional_old_self {
            None => "(*bool)(nil)".to_string(),
            Some(_) => "(*bool)(0xc000000000)".to_string(),
        };
        format!(
            "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:{reason}, FieldPath:{}, OptionalOldSelf:{old}}}",
            go_quote(&self.rule),
            go_quote(&self.message),
            go_quote(&self.message_expression),
            go_quote(&self.field_path),
        )
    }

    /// upstream `ruleErrorString`: the message when set, else the rule.
    pub fn error_string(&self) -> &str {
        if !self.message.is_empty() { self.message.trim() } else { self.rule.trim() }
    }
}

/// A checked, instrumented expression.
#[derive(Debug)]
pub struct Program {
    pub expr: Expression,
    /// Charged before evaluation: one unit per node.
    pub static_cost: u64,
}

/// The compilation of one rule (upstream `CompilationResult`).
#[derive(Debug, Default)]
pub struct CompiledRule {
    pub rule: Rule,
    /// None when the rule is empty or failed to compile.
    pub program: Option<Program>,
    /// `compilation failed: ...`, `cel expression must evaluate to a bool`, ...
    pub error: Option<String>,
    pub uses_old_self: bool,
    pub message_expression: Option<Program>,
    pub message_expression_error: Option<String>,
    /// `fieldPath` as a field path relative to the node (`spec.x`, `m[k]`), empty when unset or invalid.
    pub normalized_field_path: String,
}

/// Compiles the rules held by a schema node (`resource_root` for the CR root and embedded resources).
pub fn compile_rules(node: &Structural, resource_root: bool, rules: &[Json]) -> Vec<CompiledRule> {
    rules.iter().map(|r| compile_rule(node, resource_root, Rule::from_json(r))).collect()
}

fn compile_rule(node: &Structural, resource_root: bool, rule: Rule) -> CompiledRule {
    let mut out = CompiledRule { rule, ..CompiledRule::default() };
    if out.rule.rule.trim().is_empty() {
        return out;
    }
    let env = Env { node, resource_root };
    match compile(&env, &out.rule.rule, Want::Bool) {
        Ok((program, uses_old_self)) => {
            out.program = Some(program);
            out.uses_old_self = uses_old_self;
        }
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    }
    if !out.rule.message_expression.is_empty() {
        match compile(&env, &out.rule.message_expression, Want::String) {
            Ok((program, _)) => out.message_expression = Some(program),
            Err(e) => out.message_expression_error = Some(format!("messageExpression {e}")),
        }
    }
    if !out.rule.field_path.is_empty()
        && let Ok(p) = valid_field_path(&out.rule.field_path, node)
    {
        out.normalized_field_path = p;
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Want {
    Bool,
    String,
}

struct Env<'a> {
    node: &'a Structural,
    resource_root: bool,
}

/// Parses, checks and instruments one expression; the error is upstream's detail.
fn compile(env: &Env<'_>, src: &str, want: Want) -> Result<(Program, bool), String> {
    let expr = Parser::new()
        .enable_optional_syntax(true)
        .parse(src)
        .map_err(|e| format!("compilation failed: {}", cel_go_snippets(&e.to_string())))?;
    let mut checker = Checker { env, src, issues: Vec::new(), scopes: Vec::new() };
    checker.check(&expr);
    if !checker.issues.is_empty() {
        return Err(format!("compilation failed: {}", checker.issues.join("\n")));
    }
    match (want, obvious_type(&expr)) {
        (Want::Bool, Some(t)) if t != "bool" => return Err("cel expression must evaluate to a bool".into()),
        (Want::String, Some(t)) if t != "string" => {
            return Err("must evaluate to a string".into());
        }
        _ => {}
    }
    if let Some(e) = regex_constants(&expr, src) {
        return Err(e);
    }
    let uses_old_self = expr.references().has_variable(OLD_SELF);
    let expr = instrument(expr);
    let static_cost = count_nodes(&expr);
    Ok((Program { expr, static_cost }, uses_old_self))
}

/// cel-rust prints snippets as `| line`; cel-go as ` | line`.
pub(crate) fn cel_go_snippets(s: &str) -> String {
    s.replace("\n| ", "\n | ")
}

/// An issue at the first occurrence of `needle` in the source, as cel-go renders it with the snippet.
pub(crate) fn issue(src: &str, needle: &str, msg: &str) -> String {
    let offset = src.find(needle).unwrap_or(0);
    let line = src[..offset].matches('\n').count() + 1;
    let line_start = src[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = src[line_start..offset].chars().count() + 1;
    let text = src.lines().nth(line - 1).unwrap_or_default();
    format!("ERROR: <input>:{line}:{col}: {msg}\n | {text}\n | {}^", ".".repeat(col - 1))
}

/// The result type when evident without type inference (literals, aggregates, arithmetic, comparisons).
pub(crate) fn obvious_type(e: &Expression) -> Option<&'static str> {
    match &e.expr {
        Expr::Literal(LiteralValue::Boolean(_)) => Some("bool"),
        Expr::Literal(LiteralValue::String(_)) => Some("string"),
        Expr::Literal(LiteralValue::Int(_)) => Some("int"),
        Expr::Literal(LiteralValue::UInt(_)) => Some("uint"),
        Expr::Literal(LiteralValue::Double(_)) => Some("double"),
        Expr::Literal(LiteralValue::Bytes(_)) => Some("bytes"),
        Expr::Literal(LiteralValue::Null) => Some("null_type"),
        Expr::List(_) => Some("list"),
        Expr::Map(_) => Some("map"),
        Expr::Call(c) => match c.func_name.as_str() {
            "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" | "_&&_" | "_||_" | "!_" | "@in" => Some("bool"),
            "_*_" | "_/_" | "_%_" | "-_" => Some("number"),
            "_+_" | "_-_" => match (c.args.first().and_then(obvious_type), c.args.get(1).and_then(obvious_type)) {
                (Some(t), _) | (_, Some(t)) => Some(t),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Constant patterns of `matches`, `find` and `findAll`, and constant `duration()`/`timestamp()` arguments, are
/// validated at compile time as upstream.
pub(crate) fn regex_constants(e: &Expression, src: &str) -> Option<String> {
    let mut found = None;
    visit(e, &mut |x| {
        if found.is_some() {
            return;
        }
        let Expr::Call(c) = &x.expr else { return };
        let literal = |i: usize| match c.args.get(i).map(|a| &a.expr) {
            Some(Expr::Literal(LiteralValue::String(s))) => Some(s.inner().to_string()),
            _ => None,
        };
        let pattern_arg = if c.target.is_some() { 0 } else { 1 };
        match c.func_name.as_str() {
            "matches" => {
                if let Some(p) = literal(pattern_arg)
                    && (regex::Regex::new(&p).is_err() || nested_repetition(&p))
                {
                    found = Some(format!(
                        "compilation failed: {}",
                        issue(src, &arg_needle(src, "matches("), "invalid matches argument")
                    ));
                }
            }
            "find" | "findAll" => {
                if let Some(p) = literal(0)
                    && let Err(err) = regex::Regex::new(&p)
                {
                    let detail = err.to_string();
                    let detail = detail.lines().last().unwrap_or_default().trim_start_matches("error: ");
                    found = Some(format!("program instantiation failed: error parsing regexp: {detail}: `{p}`"));
                }
            }
            "duration" if c.target.is_none() => {
                if let Some(d) = literal(0)
                    && kube_cel::cel::functions::time::duration(std::sync::Arc::new(d)).is_err()
                {
                    found = Some(format!(
                        "compilation failed: {}",
                        issue(src, &arg_needle(src, "duration("), "invalid duration argument")
                    ));
                }
            }
            "timestamp" if c.target.is_none() => {
                let invalid = match c.args.first().map(|a| &a.expr) {
                    Some(Expr::Literal(LiteralValue::String(s))) => {
                        kube_cel::cel::functions::time::timestamp(std::sync::Arc::new(s.inner().to_string())).is_err()
                    }
                    Some(Expr::Literal(LiteralValue::Int(_))) => true,
                    _ => false,
                };
                if invalid {
                    found = Some(format!(
                        "compilation failed: {}",
                        issue(src, &arg_needle(src, "timestamp("), "invalid timestamp")
                    ));
                }
            }
            _ => {}
        }
    });
    found
}

/// RE2 (Go's regexp) refuses nested repetition operators (`x++`, `a**`), which the regex crate accepts.
fn nested_repetition(p: &str) -> bool {
    let mut chars = p.chars().peekable();
    let (mut quantified, mut lazy, mut in_class) = (false, false, false);
    while let Some(c) = chars.next() {
        if c == '\\' {
            chars.next();
            quantified = false;
            continue;
        }
        if in_class {
            in_class = c != ']';
            continue;
        }
        match c {
            '*' | '+' | '?' | '{' => {
                if c == '{' {
                    if !chars.peek().is_some_and(char::is_ascii_digit) {
                        quantified = false;
                        continue;
                    }
                    for d in chars.by_ref() {
                        if d == '}' {
                            break;
                        }
                    }
                }
                if quantified {
                    if c == '?' && !lazy {
                        lazy = true;
                        continue;
                    }
                    return true;
                }
                quantified = true;
                lazy = false;
            }
            '[' => {
                in_class = true;
                quantified = false;
            }
            _ => quantified = false,
        }
    }
    false
}

/// The source text right after `call` (the argument's first characters), to locate it in the source.
fn arg_needle(src: &str, call: &str) -> String {
    match src.find(call) {
        Some(i) => src[i + call.len()..].chars().take(3).collect(),
        None => call.to_string(),
    }
}

pub(crate) fn visit<'e>(e: &'e Expression, f: &mut dyn FnMut(&'e Expression)) {
    f(e);
    match &e.expr {
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                visit(t, f);
            }
            c.args.iter().for_each(|a| visit(a, f));
        }
        Expr::Comprehension(c) => {
            for x in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                visit(x, f);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(|x| visit(x, f)),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    visit(&me.key, f);
                    visit(&me.value, f);
                }
            }
        }
        Expr::Select(s) => visit(&s.operand, f),
        _ => {}
    }
}

pub(crate) fn count_nodes(e: &Expression) -> u64 {
    let mut n = 0;
    visit(e, &mut |_| n += 1);
    n
}

/// Routes every comprehension's loop condition through the cost function, so each iteration is charged.
pub fn instrument(mut e: Expression) -> Expression {
    fn walk(e: &mut IdedExpr) {
        match &mut e.expr {
            Expr::Call(c) => {
                if let Some(t) = &mut c.target {
                    walk(t);
                }
                c.args.iter_mut().for_each(walk);
            }
            Expr::Comprehension(c) => {
                walk(&mut c.iter_range);
                walk(&mut c.accu_init);
                walk(&mut c.loop_step);
                walk(&mut c.result);
                walk(&mut c.loop_cond);
                let cond = std::mem::take(&mut c.loop_cond);
                c.loop_cond = IdedExpr {
                    id: cond.id,
                    expr: Expr::Call(CallExpr { func_name: COST_FUNCTION.into(), target: None, args: vec![cond] }),
                };
            }
            Expr::List(l) => l.elements.iter_mut().for_each(walk),
            Expr::Map(m) => {
                for entry in &mut m.entries {
                    if let EntryExpr::MapEntry(me) = &mut entry.expr {
                        walk(&mut me.key);
                        walk(&mut me.value);
                    }
                }
            }
            Expr::Select(s) => walk(&mut s.operand),
            _ => {}
        }
    }
    walk(&mut e);
    e
}

/// What an expression is known to be, for field checks: a schema node, or the restricted metadata of a resource.
#[derive(Clone, Copy)]
enum Known<'a> {
    Schema(&'a Structural, bool),
    ObjectMeta,
    String,
}

struct Checker<'a, 'e> {
    env: &'a Env<'a>,
    src: &'a str,
    issues: Vec<String>,
    /// Comprehension variables in scope, with what they range over.
    scopes: Vec<(&'e str, Option<Known<'a>>)>,
}

impl<'a, 'e> Checker<'a, 'e> {
    fn check(&mut self, e: &'e Expression) {
        self.known(e);
    }

    fn undeclared(&mut self, name: &str) {
        let msg = format!("undeclared reference to '{name}' (in container '')");
        let needle = name.to_string();
        self.issues.push(issue(self.src, &needle, &msg));
    }

    /// Walks `e`, reporting issues, and returns what it is when known.
    fn known(&mut self, e: &'e Expression) -> Option<Known<'a>> {
        match &e.expr {
            Expr::Ident(name) => {
                if let Some((_, k)) = self.scopes.iter().rev().find(|(n, _)| *n == name) {
                    return *k;
                }
                match name.as_str() {
                    SELF | OLD_SELF => Some(Known::Schema(self.env.node, self.env.resource_root)),
                    n if n.starts_with('@') => None,
                    "int" | "uint" | "double" | "bool" | "string" | "bytes" | "list" | "map" | "null_type" | "type"
                    | "google" => None,
                    n => {
                        self.undeclared(n);
                        None
                    }
                }
            }
            Expr::Select(s) => {
                let operand = self.known(&s.operand);
                self.field(operand, &s.field)
            }
            Expr::Call(c) => self.call(c),
            Expr::Comprehension(c) => {
                let range = self.known(&c.iter_range);
                let elem = range.and_then(|r| match r {
                    Known::Schema(s, _) if s.generic.type_ == "array" => {
                        s.items.as_deref().map(|i| Known::Schema(i, i.extensions.embedded_resource))
                    }
                    Known::Schema(s, _) if s.generic.type_ == "object" => Some(Known::String),
                    _ => None,
                });
                self.known(&c.accu_init);
                self.scopes.push((c.iter_var.as_str(), elem));
                if let Some(v2) = &c.iter_var2 {
                    self.scopes.push((v2.as_str(), None));
                }
                self.scopes.push((c.accu_var.as_str(), None));
                self.known(&c.loop_cond);
                self.known(&c.loop_step);
                self.known(&c.result);
                self.scopes.truncate(self.scopes.len() - if c.iter_var2.is_some() { 3 } else { 2 });
                None
            }
            Expr::List(l) => {
                l.elements.iter().for_each(|x| {
                    self.known(x);
                });
                None
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.known(&me.key);
                        self.known(&me.value);
                    }
                }
                None
            }
            _ => None,
        }
    }

    fn call(&mut self, c: &'e CallExpr) -> Option<Known<'a>> {
        let name = c.func_name.as_str();
        match name {
            "_[_]" | "_[?_]" => {
                let operand = c.args.first().and_then(|a| self.known(a));
                if let Some(k) = c.args.get(1) {
                    self.known(k);
                }
                return match operand {
                    Some(Known::Schema(s, _)) if s.generic.type_ == "array" => {
                        s.items.as_deref().map(|i| Known::Schema(i, i.extensions.embedded_resource))
                    }
                    Some(Known::Schema(s, _)) if is_map(s) => s
                        .generic
                        .additional_properties
                        .as_ref()
                        .and_then(|a| a.structural.as_deref())
                        .map(|i| Known::Schema(i, i.extensions.embedded_resource)),
                    _ => None,
                };
            }
            "_?._" => {
                let operand = c.args.first().and_then(|a| self.known(a));
                return match c.args.get(1).map(|a| &a.expr) {
                    Some(Expr::Literal(LiteralValue::String(f))) => self.field(operand, f.inner()),
                    _ => None,
                };
            }
            _ => {}
        }
        let operator = name.starts_with('_') || name.starts_with('@') || name.starts_with('!') || name == "-_";
        let qualified = match c.target.as_deref().map(|t| &t.expr) {
            Some(Expr::Ident(ns)) => FUNCTIONS.contains(&format!("{ns}.{name}").as_str()),
            _ => false,
        };
        if !operator && !qualified && !FUNCTIONS.contains(&name) {
            self.undeclared(name);
        }
        if let Some(t) = &c.target
            && !qualified
        {
            self.known(t);
        }
        for a in &c.args {
            self.known(a);
        }
        None
    }

    /// The field `escaped` of what `operand` is: an undefined field of a declared object is an issue.
    fn field(&mut self, operand: Option<Known<'a>>, escaped: &str) -> Option<Known<'a>> {
        let undefined = |this: &mut Self| {
            let msg = format!("undefined field '{escaped}'");
            this.issues.push(issue(this.src, &format!(".{escaped}"), &msg));
            None
        };
        match operand? {
            Known::String => None,
            Known::ObjectMeta => match escaped {
                "name" | "generateName" => Some(Known::String),
                _ => undefined(self),
            },
            Known::Schema(s, root) => {
                if s.extensions.int_or_string || s.generic.type_ != "object" {
                    return None;
                }
                if is_map(s) {
                    return s
                        .generic
                        .additional_properties
                        .as_ref()
                        .and_then(|a| a.structural.as_deref())
                        .map(|i| Known::Schema(i, i.extensions.embedded_resource));
                }
                let Some(name) = unescape(escaped) else { return undefined(self) };
                if root && !super::values::declares_type_and_object_meta(s) {
                    match name.as_str() {
                        "apiVersion" | "kind" => return Some(Known::String),
                        "metadata" => return Some(Known::ObjectMeta),
                        _ => {}
                    }
                }
                match s.properties.get(&name) {
                    Some(p) if has_known_type(p) => Some(Known::Schema(p, p.extensions.embedded_resource)),
                    _ => undefined(self),
                }
            }
        }
    }
}

/// An object node whose fields are map entries (`additionalProperties`, no properties).
fn is_map(s: &Structural) -> bool {
    s.properties.is_empty()
        && s.generic.additional_properties.as_ref().is_some_and(|a| a.structural.is_some() || a.allows)
}

/// upstream `SchemaDeclType` gives no type (so the property is undeclared) to untyped nodes and to lists and maps
/// of untyped items.
fn has_known_type(s: &Structural) -> bool {
    if s.extensions.int_or_string {
        return true;
    }
    match s.generic.type_.as_str() {
        "" => false,
        "array" => s.items.as_deref().is_some_and(has_known_type),
        "object" if is_map(s) => {
            s.generic.additional_properties.as_ref().and_then(|a| a.structural.as_deref()).is_none_or(has_known_type)
        }
        _ => true,
    }
}

/// upstream `ValidFieldPath`: a JSON path of field and map accessors (`.a.b`, `.m['k']`, `['a.b']`) valid for the
/// schema, as the field path it names (`a.b`, `m[k]`).
pub fn valid_field_path(path: &str, schema: &Structural) -> Result<String, String> {
    resolve_field_path(path, schema, true).map(|(p, _)| p)
}

/// As [`valid_field_path`], with the schema the path leads to; `allow_array` false refuses `['k']` accessors
/// (upstream's `WithFieldPathAllowArrayNotation(false)`, for selectable fields).
pub fn resolve_field_path<'a>(
    path: &str,
    schema: &'a Structural,
    allow_array: bool,
) -> Result<(String, &'a Structural), String> {
    let mut out = String::new();
    let mut node = schema;
    let bytes = path.as_bytes();
    let mut i = 0;
    let append = |node: &mut &'a Structural, name: &str, out: &mut String| -> Result<(), String> {
        if !node.properties.is_empty() {
            let next = node.properties.get(name).ok_or("does not refer to a valid field")?;
            *out = crate::apiextensions::schema::field::child(out, name);
            *node = next;
        } else if let Some(ap) = node.generic.additional_properties.as_ref().and_then(|a| a.structural.as_deref()) {
            *out = crate::apiextensions::schema::field::key(out, name);
            *node = ap;
        } else {
            return Err("does not refer to a valid field".into());
        }
        Ok(())
    };
    while i < bytes.len() {
        match bytes[i] {
            b'.' => {
                let start = i + 1;
                let end = path[start..].find(['.', '[', ']']).map(|e| start + e).unwrap_or(path.len());
                if start >= end {
                    return Err("unexpected end of JSON path".into());
                }
                append(&mut node, &path[start..end], &mut out)?;
                i = end;
            }
            b'[' => {
                if !allow_array {
                    return Err("array notation is not allowed".into());
                }
                if bytes.get(i + 1) != Some(&b'\'') {
                    return Err("expected single quoted string".into());
                }
                let mut j = i + 2;
                while j < bytes.len() && !(bytes[j] == b'\'' && bytes[j - 1] != b'\\') {
                    j += 1;
                }
                if j >= bytes.len() || bytes.get(j + 1) != Some(&b']') {
                    return Err("unexpected end of JSON path".into());
                }
                let name = path[i + 2..j].replace("\\'", "'").replace("\\\\", "\\");
                append(&mut node, &name, &mut out)?;
                i = j + 2;
            }
            _ => return Err(format!("expected [ or . but got: {}", &path[i..])),
        }
    }
    Ok((out, node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Structural {
        Structural::new(&json!({"type": "object", "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "integer"}}},
            "m": {"type": "object", "additionalProperties": {"type": "object", "properties": {"x": {"type": "string"}}}},
            "l": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
            "any": {"x-kubernetes-preserve-unknown-fields": true},
        }}))
        .unwrap()
    }

    fn err(rule: &str) -> String {
        let n = node();
        compile_rules(&n, true, &[json!({"rule": rule})]).remove(0).error.unwrap_or_default()
    }

    #[test]
    fn parse_and_check_errors_read_as_cel_go() {
        assert_eq!(
            err("self.x >"),
            "compilation failed: ERROR: <input>:1:9: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n | self.x >\n | ........^"
        );
        assert_eq!(
            err("has(self.a.z)"),
            "compilation failed: ERROR: <input>:1:11: undefined field 'z'\n | has(self.a.z)\n | ..........^"
        );
        assert!(
            err("authorizer.path('/healthz').check('get').allowed()").contains("undeclared reference to 'authorizer'")
        );
        assert!(err("self.a.b.foo()").contains("undeclared reference to 'foo'"));
        assert!(err("has(self.metadata.namespace)").contains("undefined field 'namespace'"));
        assert!(err("has(self.any)").contains("undefined field 'any'"));
        assert!(err("self.l.all(e, e.nope == 'x')").contains("undefined field 'nope'"));
        assert_eq!(err("self.a.b + 1"), "cel expression must evaluate to a bool");
        assert!(err("'x'.matches('x++')").contains("invalid matches argument"));
        assert!(err("'x'.matches('a+?b{2}?c*')").is_empty());
        assert!(
            err("'x'.matches(')')").starts_with("compilation failed: ERROR: <input>:1:13: invalid matches argument")
        );
        assert!(err("'x'.find(')') == ''").starts_with("program instantiation failed: error parsing regexp"));
        assert!(
            err("duration('1d') > duration('1s')")
                .starts_with("compilation failed: ERROR: <input>:1:10: invalid duration argument")
        );
        assert!(err("timestamp('1000-00-00T00:00:00Z') > timestamp(0)").contains("invalid timestamp"));
        for ok in [
            "self.a.b == 1",
            "has(self.a.b)",
            "self.m['k'].x == 'y'",
            "self.m.k.x == 'y'",
            "self.l.all(e, e.k != '')",
            "self.metadata.name == 'x' && self.kind == 'K' && self.apiVersion != ''",
            "sets.contains([1], [1])",
            "type(self.a.b) == int",
            "self.?a.?b.orValue(0) == 0",
            "self.l.map(e, e.k).exists(k, k == 'a')",
            "quantity('1').isLessThan(quantity('2'))",
            "oldSelf.a.b == self.a.b",
        ] {
            assert_eq!(err(ok), "", "{ok}");
        }
    }

    #[test]
    fn transition_rules_message_expressions_and_field_paths() {
        let n = node();
        let compiled = compile_rules(
            &n,
            true,
            &[
                json!({"rule": "self.a == oldSelf.a", "messageExpression": "'was ' + string(oldSelf.a.b)", "fieldPath": ".a.b"}),
                json!({"rule": "true", "messageExpression": "1 + 1"}),
                json!({"rule": ""}),
            ],
        );
        assert!(compiled[0].uses_old_self && compiled[0].message_expression.is_some());
        assert_eq!(compiled[0].normalized_field_path, "a.b");
        assert_eq!(
            compiled[1].message_expression_error.as_deref(),
            Some("messageExpression must evaluate to a string")
        );
        assert!(compiled[2].program.is_none() && compiled[2].error.is_none());
        assert_eq!(valid_field_path(".m['a.b'].x", &n).unwrap(), "m[a.b].x");
        assert_eq!(valid_field_path(".nope", &n).unwrap_err(), "does not refer to a valid field");
    }
}
