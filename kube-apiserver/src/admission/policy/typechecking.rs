//! Type checking of a policy's validations (upstream `policy/validating/typechecking.go`): each `expression` and
//! `messageExpression` is checked against the schema of every kind its resourceRules name exactly (at most 10;
//! wildcards and subresources are skipped), with `params` typed by the paramKind's schema; the issues become the
//! `status.typeChecking.expressionWarnings` that [`super::status`] writes.
//!
//! The interpreter has no type checker, so this is ours, over the built-in kinds' OpenAPI schemas
//! ([`api_types::schema::openapi_definitions`]). It infers the types of literals, of fields selected from
//! `object`, `oldObject`, `params` and `namespaceObject`, of indexing, of `variables` and of the operators, and
//! reports what cel-go's checker reports for them: fields a kind does not have (`undefined field 'x'`) and
//! operators applied to scalar types they have no overload for (`found no matching overload for '_>_' applied to
//! '(int, string)'`). Function calls, comprehension results and everything typed `dyn` upstream are not checked.
//! Custom resources are checked against their CRD's `openAPIV3Schema` (with `apiVersion`, `kind` and ObjectMeta
//! added as upstream's `WithTypeAndObjectMeta`), which the caller provides.

use std::collections::HashMap;
use std::sync::Arc;

use kube_cel::cel::common::ast::{CallExpr, EntryExpr, Expr, LiteralValue};
use kube_cel::cel::parser::{Expression, Parser};
use serde_json::{Map, Value as Json, json};

use crate::admission::cel::compile::{NAMESPACE_OBJECT, OBJECT, OLD_OBJECT, PARAMS, VARIABLES};

/// upstream `maxTypesToCheck`.
const MAX_TYPES: usize = 10;

/// The OpenAPI definitions of a group-version, with the schema name of each kind.
#[derive(Debug)]
struct Definitions {
    defs: Map<String, Json>,
    roots: HashMap<String, String>,
}

/// Schemas by group-version, computed once per checker.
#[derive(Debug, Default)]
pub struct TypeChecker {
    definitions: HashMap<(String, String), Arc<Definitions>>,
}

/// A CEL type as far as this checker knows it.
#[derive(Debug, Clone)]
enum Ty<'a> {
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Timestamp,
    Duration,
    List(Box<Ty<'a>>),
    Map(Box<Ty<'a>>, Box<Ty<'a>>),
    /// An object with declared properties: its schema and the definitions its references resolve in.
    Object(&'a Json, &'a Definitions),
}

impl Ty<'_> {
    /// cel-go's name of a scalar type (None for the others, which are never reported).
    fn scalar_name(&self) -> Option<&'static str> {
        Some(match self {
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Uint => "uint",
            Ty::Double => "double",
            Ty::String => "string",
            Ty::Bytes => "bytes",
            Ty::Timestamp => "google.protobuf.Timestamp",
            Ty::Duration => "google.protobuf.Duration",
            _ => return None,
        })
    }

    fn numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }

    fn same_scalar(&self, other: &Ty<'_>) -> bool {
        self.scalar_name().is_some() && self.scalar_name() == other.scalar_name()
    }
}

impl TypeChecker {
    fn definitions(&mut self, group: &str, version: &str) -> Arc<Definitions> {
        self.definitions
            .entry((group.to_string(), version.to_string()))
            .or_insert_with(|| {
                let (defs, roots) = api_types::schema::openapi_definitions(group, version);
                Arc::new(Definitions {
                    defs,
                    roots: roots.into_iter().map(|(name, kind)| (kind.to_string(), name)).collect(),
                })
            })
            .clone()
    }

    /// The warnings of a policy (upstream `TypeChecker.Check`): (fieldRef, warning).
    pub fn check(&mut self, policy: &Json) -> Vec<(String, String)> {
        self.check_with(policy, &HashMap::new())
    }

    /// As [`Self::check`], with the schemas of the custom resources the policy names, by (group, version,
    /// resource).
    pub fn check_with(
        &mut self,
        policy: &Json,
        custom: &HashMap<(String, String, String), CustomSchema>,
    ) -> Vec<(String, String)> {
        let spec = &policy["spec"];
        let params = spec.get("paramKind").filter(|p| p.is_object()).and_then(|p| {
            let (group, version) = split_api_version(p["apiVersion"].as_str()?);
            Some((group.to_string(), version.to_string(), p["kind"].as_str()?.to_string()))
        });
        let mut contexts: Vec<(String, Arc<Definitions>, String)> = Vec::new();
        for (group, version, resource) in resources_to_check(spec) {
            let (defs, kind) = match api_types::resources::find(&group, &version, &resource) {
                Some(res) => (self.definitions(&group, &version), res.kind.to_string()),
                None => match custom.get(&(group.clone(), version.clone(), resource.clone())) {
                    Some(c) => (self.custom_definitions(c), c.kind.clone()),
                    None => continue, // no schema: skipped, as upstream's ErrSchemaNotFound
                },
            };
            if !defs.roots.contains_key(&kind) {
                continue;
            }
            let gvk = format!("{group}/{version}, Kind={kind}");
            if !contexts.iter().any(|(g, _, _)| *g == gvk) {
                contexts.push((gvk, defs, kind));
            }
            if contexts.len() == MAX_TYPES {
                break;
            }
        }
        contexts.sort_by(|a, b| a.0.cmp(&b.0));
        if contexts.is_empty() {
            return Vec::new();
        }
        let param_defs = params.as_ref().map(|(g, v, k)| (self.definitions(g, v), k.clone()));
        let core = self.definitions("", "v1");
        let mut warnings = Vec::new();
        for (i, v) in spec["validations"].as_array().into_iter().flatten().enumerate() {
            for field in ["expression", "messageExpression"] {
                let Some(src) = v[field].as_str().filter(|s| !s.is_empty()) else { continue };
                let mut messages = String::new();
                for (gvk, defs, kind) in &contexts {
                    let env = Env {
                        object: root(defs, kind),
                        params: param_defs.as_ref().map(|(d, k)| root(d, k)),
                        namespace: root(&core, "Namespace"),
                        has_params: params.is_some(),
                    };
                    let issues = check_expression(&env, spec["variables"].as_array().map(Vec::as_slice), src);
                    if !issues.is_empty() {
                        messages.push_str(&format!("{gvk}: {}\n", issues.join("\n")));
                    }
                }
                if !messages.is_empty() {
                    warnings.push((format!("spec.validations[{i}].{field}"), messages));
                }
            }
        }
        warnings
    }
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// A custom resource version's kind and `openAPIV3Schema`.
#[derive(Debug, Clone)]
pub struct CustomSchema {
    pub kind: String,
    pub schema: Json,
}

/// The OpenAPI name of ObjectMeta (in every group-version's definitions that have a kind).
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

impl TypeChecker {
    /// The definitions of a custom resource: ObjectMeta's (from core/v1) and its root, with `apiVersion`, `kind`
    /// and `metadata` declared when the schema leaves them out.
    fn custom_definitions(&mut self, c: &CustomSchema) -> Arc<Definitions> {
        let core = self.definitions("", "v1");
        let mut defs = core.defs.clone();
        let mut root = c.schema.clone();
        if let Some(props) = root
            .as_object_mut()
            .map(|r| r.entry("properties").or_insert_with(|| json!({})))
            .and_then(Json::as_object_mut)
        {
            props.entry("apiVersion").or_insert_with(|| json!({"type": "string"}));
            props.entry("kind").or_insert_with(|| json!({"type": "string"}));
            // Whatever the schema says of metadata, expressions see ObjectMeta.
            props.insert("metadata".into(), json!({"$ref": format!("#/components/schemas/{OBJECT_META}")}));
        }
        let name = format!("custom.{}", c.kind);
        defs.insert(name.clone(), root);
        Arc::new(Definitions { defs, roots: [(c.kind.clone(), name)].into_iter().collect() })
    }
}

/// The (group, version, resource) the resourceRules name exactly, sorted, without wildcards and subresources
/// (upstream `typesToCheck`).
pub fn resources_to_check(spec: &Json) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    let strings = |v: &Json| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(Json::as_str).map(str::to_string).collect()
    };
    for rule in spec.pointer("/matchConstraints/resourceRules").and_then(Json::as_array).into_iter().flatten() {
        let mut groups = strings(&rule["apiGroups"]);
        let mut versions = strings(&rule["apiVersions"]);
        if groups.iter().chain(&versions).any(|s| s.contains('*')) {
            continue;
        }
        let mut resources: Vec<String> =
            strings(&rule["resources"]).into_iter().filter(|r| !r.contains(['*', '/'])).collect();
        groups.sort();
        versions.sort();
        resources.sort();
        for g in &groups {
            for v in &versions {
                for r in &resources {
                    let k = (g.clone(), v.clone(), r.clone());
                    if !out.contains(&k) {
                        out.push(k);
                    }
                }
            }
        }
    }
    out
}

fn root<'a>(defs: &'a Definitions, kind: &str) -> Ty<'a> {
    match defs.roots.get(kind).and_then(|n| defs.defs.get(n)) {
        Some(s) => schema_type(s, defs),
        None => Ty::Dyn,
    }
}

/// The schema a node refers to (`$ref`, or `allOf: [{$ref}]` when the reference has a description).
fn resolve<'a>(s: &'a Json, defs: &'a Definitions) -> &'a Json {
    let r = s.get("$ref").or_else(|| s.pointer("/allOf/0/$ref")).and_then(Json::as_str);
    match r.and_then(|r| r.rsplit('/').next()).and_then(|name| defs.defs.get(name)) {
        Some(target) => resolve(target, defs),
        None => s,
    }
}

/// upstream `SchemaDeclType`, for what the checker uses.
fn schema_type<'a>(s: &'a Json, defs: &'a Definitions) -> Ty<'a> {
    let s = resolve(s, defs);
    if s.get("x-kubernetes-int-or-string").is_some() || s.get("x-kubernetes-preserve-unknown-fields").is_some() {
        return Ty::Dyn;
    }
    let format = s["format"].as_str().unwrap_or_default();
    match s["type"].as_str().unwrap_or_default() {
        "boolean" => Ty::Bool,
        "integer" => Ty::Int,
        "number" => Ty::Double,
        "string" => match format {
            "byte" => Ty::Bytes,
            "date-time" => Ty::Timestamp,
            "duration" => Ty::Duration,
            _ => Ty::String,
        },
        "array" => Ty::List(Box::new(s.get("items").map(|i| schema_type(i, defs)).unwrap_or(Ty::Dyn))),
        "object" if s.get("properties").is_some_and(|p| p.as_object().is_some_and(|p| !p.is_empty())) => {
            Ty::Object(s, defs)
        }
        "object" => match s.get("additionalProperties") {
            Some(a) if a.is_object() => Ty::Map(Box::new(Ty::String), Box::new(schema_type(a, defs))),
            _ => Ty::Dyn,
        },
        _ => Ty::Dyn,
    }
}

struct Env<'a> {
    object: Ty<'a>,
    params: Option<Ty<'a>>,
    namespace: Ty<'a>,
    has_params: bool,
}

/// The issues of one expression against one kind, as cel-go's checker words them.
fn check_expression<'a>(env: &Env<'a>, variables: Option<&[Json]>, src: &str) -> Vec<String> {
    let Ok(expr) = Parser::new().enable_optional_syntax(true).parse(src) else { return Vec::new() };
    let mut vars: Vec<(String, Ty<'a>)> = Vec::new();
    for v in variables.unwrap_or_default() {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let ty = match v["expression"].as_str().map(|s| Parser::new().enable_optional_syntax(true).parse(s)) {
            Some(Ok(e)) => {
                let mut c = Checker {
                    env,
                    variables: &vars,
                    scopes: Vec::new(),
                    issues: Vec::new(),
                    src: "",
                    ops: HashMap::new(),
                };
                c.infer(&e)
            }
            _ => Ty::Dyn,
        };
        vars.push((name, ty));
    }
    let mut c = Checker { env, variables: &vars, scopes: Vec::new(), issues: Vec::new(), src, ops: HashMap::new() };
    c.infer(&expr);
    c.issues
}

struct Checker<'a, 'v, 'e> {
    env: &'v Env<'a>,
    variables: &'v [(String, Ty<'a>)],
    scopes: Vec<(&'e str, Ty<'a>)>,
    issues: Vec<String>,
    src: &'v str,
    /// How many operators of each kind were met so far, left to right (to find them in the source).
    ops: HashMap<&'static str, usize>,
}

impl<'a, 'e> Checker<'a, '_, 'e> {
    fn report(&mut self, offset: Option<usize>, msg: &str) {
        if self.src.is_empty() {
            return; // a variable's own issues are reported on the variable, not here
        }
        let offset = offset.unwrap_or(0);
        let src = self.src;
        let line = src[..offset].matches('\n').count() + 1;
        let line_start = src[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = src[line_start..offset].chars().count() + 1;
        let text = src.lines().nth(line - 1).unwrap_or_default();
        self.issues.push(format!("ERROR: <input>:{line}:{col}: {msg}\n | {text}\n | {}^", ".".repeat(col - 1)));
    }

    /// The byte offset of the next occurrence (left to right) of an operator token outside string literals.
    fn next_operator(&mut self, token: &'static str) -> Option<usize> {
        let n = self.ops.entry(token).or_insert(0);
        let wanted = *n;
        *n += 1;
        operator_offsets(self.src, token).into_iter().nth(wanted)
    }

    fn infer(&mut self, e: &'e Expression) -> Ty<'a> {
        match &e.expr {
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::UInt(_) => Ty::Uint,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Null => Ty::Null,
            },
            Expr::Ident(name) => {
                if let Some((_, t)) = self.scopes.iter().rev().find(|(n, _)| n == name) {
                    return t.clone();
                }
                match name.as_str() {
                    OBJECT | OLD_OBJECT => self.env.object.clone(),
                    PARAMS if self.env.has_params => self.env.params.clone().unwrap_or(Ty::Dyn),
                    NAMESPACE_OBJECT => self.env.namespace.clone(),
                    _ => Ty::Dyn,
                }
            }
            Expr::Select(s) => {
                if let Expr::Ident(v) = &s.operand.expr
                    && v == VARIABLES
                    && !self.scopes.iter().any(|(n, _)| *n == VARIABLES)
                {
                    let t = self.variables.iter().find(|(n, _)| *n == s.field).map(|(_, t)| t.clone());
                    return if s.test { Ty::Bool } else { t.unwrap_or(Ty::Dyn) };
                }
                let operand = self.infer(&s.operand);
                let field = self.field(&operand, &s.field);
                if s.test { Ty::Bool } else { field }
            }
            Expr::Call(c) => self.call(c),
            Expr::Comprehension(c) => {
                let range = self.infer(&c.iter_range);
                let elem = match &range {
                    Ty::List(t) => (**t).clone(),
                    Ty::Map(k, _) => (**k).clone(),
                    _ => Ty::Dyn,
                };
                self.infer(&c.accu_init);
                let before = self.scopes.len();
                self.scopes.push((c.iter_var.as_str(), elem));
                if let Some(v2) = &c.iter_var2 {
                    self.scopes.push((v2.as_str(), Ty::Dyn));
                }
                self.scopes.push((c.accu_var.as_str(), Ty::Dyn));
                self.infer(&c.loop_cond);
                self.infer(&c.loop_step);
                self.infer(&c.result);
                self.scopes.truncate(before);
                Ty::Dyn
            }
            Expr::List(l) => {
                let mut elem = None;
                for x in &l.elements {
                    let t = self.infer(x);
                    elem.get_or_insert(t);
                }
                Ty::List(Box::new(elem.unwrap_or(Ty::Dyn)))
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.infer(&me.key);
                        self.infer(&me.value);
                    }
                }
                Ty::Dyn
            }
            _ => Ty::Dyn,
        }
    }

    /// The type of `field` of a value of type `t`; an undefined field of a declared object is an issue.
    fn field(&mut self, t: &Ty<'a>, field: &str) -> Ty<'a> {
        match t {
            Ty::Object(s, defs) => match s["properties"].get(field) {
                Some(p) => schema_type(p, defs),
                None => {
                    let offset = find_outside_strings(self.src, &format!(".{field}")).map(|o| o + 1);
                    self.report(offset, &format!("undefined field '{field}'"));
                    Ty::Dyn
                }
            },
            Ty::Map(_, v) => (**v).clone(),
            _ => Ty::Dyn,
        }
    }

    fn call(&mut self, c: &'e CallExpr) -> Ty<'a> {
        let op = c.func_name.as_str();
        let token = match op {
            "_==_" => Some("=="),
            "_!=_" => Some("!="),
            "_<_" => Some("<"),
            "_<=_" => Some("<="),
            "_>_" => Some(">"),
            "_>=_" => Some(">="),
            "_+_" => Some("+"),
            "_-_" => Some("-"),
            "_*_" => Some("*"),
            "_/_" => Some("/"),
            "_%_" => Some("%"),
            "_&&_" => Some("&&"),
            "_||_" => Some("||"),
            _ => None,
        };
        if let (Some(token), [l, r]) = (token, c.args.as_slice()) {
            // In source order: left operand, operator, right operand.
            let lt = self.infer(l);
            let at = self.next_operator(token);
            let rt = self.infer(r);
            return self.binary(op, at, &lt, &rt);
        }
        match op {
            "_[_]" => {
                let t = c.args.first().map(|a| self.infer(a)).unwrap_or(Ty::Dyn);
                if let Some(k) = c.args.get(1) {
                    self.infer(k);
                }
                match t {
                    Ty::List(e) => *e,
                    Ty::Map(_, v) => *v,
                    _ => Ty::Dyn,
                }
            }
            "!_" => {
                c.args.iter().for_each(|a| {
                    self.infer(a);
                });
                Ty::Bool
            }
            _ => {
                if let Some(t) = &c.target {
                    self.infer(t);
                }
                for a in &c.args {
                    self.infer(a);
                }
                match op {
                    "size" => Ty::Int,
                    "string" => Ty::String,
                    "int" => Ty::Int,
                    "double" => Ty::Double,
                    "startsWith" | "endsWith" | "contains" | "matches" | "@in" => Ty::Bool,
                    _ => Ty::Dyn,
                }
            }
        }
    }

    /// The result of a binary operator, reporting scalar operand types it has no overload for.
    fn binary(&mut self, op: &str, at: Option<usize>, l: &Ty<'a>, r: &Ty<'a>) -> Ty<'a> {
        let known = l.scalar_name().is_some() && r.scalar_name().is_some();
        let (ok, result) = match op {
            "_==_" | "_!=_" => (!known || l.same_scalar(r), Ty::Bool),
            "_<_" | "_<=_" | "_>_" | "_>=_" => (!known || l.same_scalar(r) || (l.numeric() && r.numeric()), Ty::Bool),
            "_&&_" | "_||_" => (!known || (matches!(l, Ty::Bool) && matches!(r, Ty::Bool)), Ty::Bool),
            "_+_" => {
                let ok = match (l, r) {
                    (Ty::Timestamp, Ty::Duration) | (Ty::Duration, Ty::Timestamp) => true,
                    (Ty::Bool, Ty::Bool) => false,
                    _ => !known || l.same_scalar(r),
                };
                let result = match (l, r) {
                    (Ty::Timestamp, _) | (_, Ty::Timestamp) => Ty::Timestamp,
                    (t, _) if t.scalar_name().is_some() => t.clone(),
                    _ => Ty::Dyn,
                };
                (ok, result)
            }
            "_-_" => {
                let ok = match (l, r) {
                    (Ty::Timestamp, Ty::Timestamp | Ty::Duration) | (Ty::Duration, Ty::Duration) => true,
                    _ => !known || (l.same_scalar(r) && l.numeric()),
                };
                let result = match (l, r) {
                    (Ty::Timestamp, Ty::Timestamp) => Ty::Duration,
                    (t, _) if t.scalar_name().is_some() => t.clone(),
                    _ => Ty::Dyn,
                };
                (ok, result)
            }
            "_*_" | "_/_" => {
                (!known || (l.same_scalar(r) && l.numeric()), if l.numeric() { l.clone() } else { Ty::Dyn })
            }
            "_%_" => (
                !known || (l.same_scalar(r) && matches!(l, Ty::Int | Ty::Uint)),
                if l.numeric() { l.clone() } else { Ty::Dyn },
            ),
            _ => (true, Ty::Dyn),
        };
        if !ok {
            let msg = format!(
                "found no matching overload for '{op}' applied to '({}, {})'",
                l.scalar_name().unwrap_or("dyn"),
                r.scalar_name().unwrap_or("dyn")
            );
            self.report(at, &msg);
            return Ty::Dyn;
        }
        result
    }
}

/// The byte offsets of a token outside string literals (an operator `<` is not the start of `<=`).
fn operator_offsets(src: &str, token: &str) -> Vec<usize> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == b'\'' || c == b'"' {
            quote = Some(c);
            i += 1;
            continue;
        }
        if src[i..].starts_with(token) {
            let next = b.get(i + token.len()).copied();
            let prev = i.checked_sub(1).map(|p| b[p]);
            let longer = match token {
                "<" | ">" => next == Some(b'='),
                "=" => false,
                "-" => false,
                _ => false,
            } || (token == "==" && prev == Some(b'!'));
            let part_of_other = matches!(token, "<" | ">" | "=") && matches!(prev, Some(b'<' | b'>' | b'=' | b'!'));
            if !longer && !part_of_other {
                out.push(i);
                i += token.len();
                continue;
            }
        }
        i += 1;
    }
    out
}

fn find_outside_strings(src: &str, needle: &str) -> Option<usize> {
    operator_offsets(src, needle).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(validations: Json) -> Json {
        json!({"spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"],
                                                    "operations": ["CREATE"]}]},
            "validations": validations,
        }})
    }

    #[test]
    fn upstream_e2e_type_confusion() {
        let mut tc = TypeChecker::default();
        assert!(tc.check(&policy(json!([{"expression": "object.spec.replicas > 1"}]))).is_empty());
        let w = tc.check(&policy(json!([{
            "expression": "object.spec.replicas > '1'",
            "messageExpression": "'wants replicas > 1, got ' + object.spec.replicas",
        }])));
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(w[0].0, "spec.validations[0].expression");
        assert_eq!(
            w[0].1,
            "apps/v1, Kind=Deployment: ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'\n | object.spec.replicas > '1'\n | .....................^\n"
        );
        assert_eq!(w[1].0, "spec.validations[0].messageExpression");
        assert!(w[1].1.contains("found no matching overload for '_+_' applied to '(string, int)'"), "{}", w[1].1);
    }

    #[test]
    fn fields_maps_lists_and_skipped_kinds() {
        let mut tc = TypeChecker::default();
        let ok = [
            "object.metadata.name.startsWith('x') && object.metadata.labels['a'] == 'b'",
            "object.spec.template.spec.containers.all(c, c.image != '' && c.name.size() < 64)",
            "has(object.spec.paused) && object.spec.strategy.type == 'Recreate'",
            "object.spec.replicas + 1 > 2 && object.spec.replicas * 2.0 > 1.0 || true",
            "oldObject == null || oldObject.spec.replicas <= object.spec.replicas",
        ];
        for e in ok {
            let w = tc.check(&policy(json!([{"expression": e}])));
            // `replicas * 2.0` is int * double: cel-go refuses it too.
            if e.contains("2.0") {
                assert!(w[0].1.contains("'_*_' applied to '(int, double)'"), "{w:?}");
            } else {
                assert!(w.is_empty(), "{e}: {w:?}");
            }
        }
        let w = tc.check(&policy(json!([{"expression": "object.spec.nope == 1"}])));
        assert!(w[0].1.contains("undefined field 'nope'"), "{w:?}");
        let w = tc.check(&policy(json!([{"expression": "object.metadata.labels['a'] == 1"}])));
        assert!(w[0].1.contains("'_==_' applied to '(string, int)'"), "{w:?}");
        // Params typed by their kind.
        let mut p = policy(json!([{"expression": "object.spec.replicas <= params.data.max"}]));
        p["spec"]["paramKind"] = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        let w = tc.check(&p);
        assert!(w[0].1.contains("'_<=_' applied to '(int, string)'"), "{w:?}");
        // A custom resource, against its CRD's schema.
        let mut p =
            policy(json!([{"expression": "object.spec.replicas > '1'"}, {"expression": "object.spec.maxRetries < 10"},
                                  {"expression": "object.metadata.name != '' && object.spec.cronSpec != ''"}]));
        p["spec"]["matchConstraints"]["resourceRules"][0]["apiGroups"] = json!(["stable.example.com"]);
        p["spec"]["matchConstraints"]["resourceRules"][0]["resources"] = json!(["crontabs"]);
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "cronSpec": {"type": "string"}, "image": {"type": "string"}, "replicas": {"type": "integer"}}}}});
        let custom = [(
            ("stable.example.com".to_string(), "v1".to_string(), "crontabs".to_string()),
            CustomSchema { kind: "CronTab".into(), schema },
        )]
        .into_iter()
        .collect();
        let w = tc.check_with(&p, &custom);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].1.starts_with("stable.example.com/v1, Kind=CronTab: ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'"), "{w:?}");
        assert_eq!(w[1].0, "spec.validations[1].expression");
        assert!(w[1].1.contains("undefined field 'maxRetries'"), "{w:?}");
        assert!(tc.check(&p).is_empty(), "without its schema a custom resource is not checked");
        // Wildcards are not checked.
        let mut p = policy(json!([{"expression": "object.spec.nope == 1"}]));
        p["spec"]["matchConstraints"]["resourceRules"][0]["apiGroups"] = json!(["*"]);
        assert!(tc.check(&p).is_empty());
    }
}
