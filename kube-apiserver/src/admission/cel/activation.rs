//! What admission expressions see and how they are evaluated (upstream `admission/plugin/cel/activation.go`,
//! `condition.go` and `composition.go`): the variables of a request (`object`, `oldObject`, `request`,
//! `namespaceObject`, `params`, `authorizer`), bound once per evaluation scope; `variables.<name>` evaluated on
//! first use, in declaration order, and kept for the later expressions of the same scope (an unused variable is
//! never evaluated, one that fails fails only the expressions that read it); the cost of everything evaluated in a
//! scope charged against one runtime budget.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use api_types::Resource;
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{ExecutionError, Value};
use serde_json::{Value as Json, json};

use super::compile::{AUTHORIZER, Compiled, NAMESPACE_OBJECT, OBJECT, OLD_OBJECT, PARAMS, REQUEST, VARIABLES};
use crate::admission::Request;
use crate::apiextensions::cel::authz::{AuthorizeFn, Authz};
use crate::apiextensions::cel::library::{self, EVALUATION_DEADLINE, PER_CALL_LIMIT, Scope};
use crate::apiextensions::cel::values::untyped;

/// upstream `celconfig.RuntimeCELCostBudget`: what all expressions of one evaluation may spend.
pub const RUNTIME_COST_BUDGET: i64 = library::RUNTIME_COST_BUDGET;

/// upstream's error when the runtime budget is spent.
pub const OUT_OF_BUDGET: &str =
    "validation failed due to running out of cost budget, no further validation rules will be run";

/// The inputs of one evaluation.
pub struct Inputs<'a> {
    pub request: &'a Request<'a>,
    /// The resource the policy's rules matched (an equivalent of the request's under matchPolicy Equivalent).
    pub matched: &'a Resource,
    pub params: Option<&'a Json>,
    pub namespace: Option<&'a Json>,
    pub authorizer: Option<AuthorizeFn>,
}

/// The bindings of an evaluation scope.
pub fn bindings(i: &Inputs<'_>) -> Vec<(&'static str, Value)> {
    let r = i.request;
    let json_or_null = |o: Option<&Json>| o.map(untyped).unwrap_or(Value::Null);
    let mut out = vec![
        (OBJECT, json_or_null(r.object)),
        (OLD_OBJECT, json_or_null(r.old)),
        (REQUEST, untyped(&request(r, i.matched))),
        (NAMESPACE_OBJECT, i.namespace.map(|ns| untyped(&namespace(ns))).unwrap_or(Value::Null)),
        (PARAMS, json_or_null(i.params)),
    ];
    if let Some(authorize) = &i.authorizer {
        let authz = Authz::new(r.user.clone(), authorize.clone());
        let ns = crate::admission::webhook::review::request_namespace(r);
        let res = r.resource;
        out.push((AUTHORIZER, authz.variable(res.group, res.plural, r.subresource, ns, r.name)));
    }
    out
}

/// The `request` variable (upstream `CreateAdmissionRequest`): kind and resource as matched, requestKind and
/// requestResource as requested.
pub fn request(r: &Request<'_>, matched: &Resource) -> Json {
    let u = r.user;
    let mut user = json!({"username": u.username});
    if !u.uid.is_empty() {
        user["uid"] = json!(u.uid);
    }
    if !u.groups.is_empty() {
        user["groups"] = json!(u.groups);
    }
    if !u.extra.is_empty() {
        user["extra"] = json!(u.extra);
    }
    let name = match (r.name, r.object) {
        ("", Some(o)) => crate::registry::meta_str(o, "name").unwrap_or_default(),
        (n, _) => n,
    };
    let res = r.resource;
    let gvk = |res: &Resource| {
        let (group, version, kind) = r.kind_of(res);
        json!({"group": group, "version": version, "kind": kind})
    };
    json!({
        "uid": "",
        "kind": gvk(matched),
        "resource": {"group": matched.group, "version": matched.version, "resource": matched.plural},
        "subResource": r.subresource,
        "requestKind": gvk(res),
        "requestResource": {"group": res.group, "version": res.version, "resource": res.plural},
        "requestSubResource": r.subresource,
        "name": name,
        "namespace": r.namespace,
        "operation": r.operation.as_str(),
        "userInfo": user,
        "dryRun": r.dry_run,
        "options": crate::admission::webhook::review::options(r.operation, r.dry_run),
    })
}

/// The `namespaceObject` variable (upstream `CreateNamespaceObject`): the namespace's spec, status and the
/// metadata fields upstream keeps.
pub fn namespace(ns: &Json) -> Json {
    const KEPT: &[&str] = &[
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "finalizers",
    ];
    let mut meta = serde_json::Map::new();
    if let Some(m) = ns.get("metadata").and_then(Json::as_object) {
        for k in KEPT {
            if let Some(v) = m.get(*k) {
                meta.insert(k.to_string(), v.clone());
            }
        }
    }
    json!({"metadata": meta, "spec": ns.get("spec").cloned().unwrap_or(json!({})),
           "status": ns.get("status").cloned().unwrap_or(json!({}))})
}

/// A policy variable (`spec.variables[i]`), compiled.
#[derive(Debug)]
pub struct Variable {
    pub name: String,
    pub compiled: Compiled,
}

/// Why an evaluation stopped short of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The expression failed (compile error, runtime error): upstream's message.
    Error(String),
    /// The scope's runtime budget is spent: nothing more is evaluated.
    OutOfBudget,
}

/// One evaluation scope: the bindings, the variables evaluated so far and the budget left.
pub struct Activation<'s, 'v> {
    scope: &'s Scope<'s>,
    variables: &'v [Variable],
    values: RefCell<Vec<Option<Result<Value, String>>>>,
    budget: Cell<i64>,
    deadline: Instant,
}

impl<'s, 'v> Activation<'s, 'v> {
    pub fn new(scope: &'s Scope<'s>, variables: &'v [Variable], budget: i64) -> Self {
        Activation {
            scope,
            variables,
            values: RefCell::new(vec![None; variables.len()]),
            budget: Cell::new(budget),
            deadline: Instant::now() + EVALUATION_DEADLINE,
        }
    }

    /// The budget left.
    pub fn remaining(&self) -> i64 {
        self.budget.get()
    }

    /// Evaluates one expression: its value, or upstream's error (`expression '<e>' resulted in error: <why>`,
    /// `compilation error: <why>`).
    pub fn evaluate(&self, c: &Compiled) -> Result<Value, Failure> {
        let program = match &c.program {
            Ok(p) => p,
            Err(e) => return Err(Failure::Error(format!("compilation error: {e}"))),
        };
        let vars = self.variables_for(&c.variables)?;
        let limit = (self.budget.get().max(0) as u64).min(PER_CALL_LIMIT);
        let eval = self.scope.evaluate(&program.expr, program.static_cost, &vars, limit, Some(self.deadline));
        self.charge(eval.cost)?;
        eval.result.map_err(|e| {
            let why = match &e {
                ExecutionError::NoSuchKey(k) => self.variable_error(k).unwrap_or_else(|| library::error_text(&e)),
                _ => library::error_text(&e),
            };
            Failure::Error(format!("expression '{}' resulted in error: {why}", c.source))
        })
    }

    fn charge(&self, cost: u64) -> Result<(), Failure> {
        let left = self.budget.get() - cost.min(i64::MAX as u64) as i64;
        self.budget.set(left);
        if left < 0 { Err(Failure::OutOfBudget) } else { Ok(()) }
    }

    /// The error of a variable that failed, by name.
    fn variable_error(&self, name: &str) -> Option<String> {
        let i = self.variables.iter().position(|v| v.name == name)?;
        self.values.borrow()[i].as_ref().and_then(|r| r.as_ref().err().cloned())
    }

    /// The `variables` binding for an expression reading `names`: each evaluated on first use; the ones that
    /// failed are left out (reading one reports its error).
    fn variables_for(&self, names: &[String]) -> Result<Vec<(&'static str, Value)>, Failure> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut map = HashMap::new();
        for name in names {
            let Some(i) = self.variables.iter().position(|v| v.name == *name) else { continue };
            if let Ok(v) = self.variable(i)? {
                map.insert(Key::String(Arc::new(name.clone())), v);
            }
        }
        Ok(vec![(VARIABLES, Value::Map(Map { map: Arc::new(map) }))])
    }

    fn variable(&self, i: usize) -> Result<Result<Value, String>, Failure> {
        if let Some(done) = &self.values.borrow()[i] {
            return Ok(done.clone());
        }
        let v = &self.variables[i];
        let result = match &v.compiled.program {
            Err(e) => Err(format!("composited variable {:?} fails to compile: {e}", v.name)),
            Ok(program) => {
                let vars = self.variables_for(&v.compiled.variables)?;
                let limit = (self.budget.get().max(0) as u64).min(PER_CALL_LIMIT);
                let eval = self.scope.evaluate(&program.expr, program.static_cost, &vars, limit, Some(self.deadline));
                self.charge(eval.cost)?;
                eval.result.map_err(|e| {
                    format!("composited variable {:?} fails to evaluate: {}", v.name, library::error_text(&e))
                })
            }
        };
        self.values.borrow_mut()[i] = Some(result.clone());
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::super::compile::{Decls, Want, compile};
    use super::*;
    use crate::admission::Operation;
    use crate::auth::UserInfo;

    fn variables(decls: &[(&str, &str)]) -> Vec<Variable> {
        let mut names: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for (name, src) in decls {
            let d = Decls { variables: Some(&names), ..Default::default() };
            out.push(Variable { name: name.to_string(), compiled: compile(src, d, Want::Any) });
            names.push(name.to_string());
        }
        out
    }

    #[test]
    fn request_object_and_variables() {
        let deployments = api_types::resources::find("apps", "v1", "deployments").unwrap();
        let user = UserInfo { username: "alice".into(), groups: vec!["devs".into()], ..Default::default() };
        let obj = json!({"metadata": {"name": "d"}, "spec": {"replicas": 3}});
        let r = Request {
            operation: Operation::Create,
            resource: deployments,
            subresource: "",
            namespace: "ns",
            name: "d",
            object: Some(&obj),
            old: None,
            user: &user,
            dry_run: false,
        };
        let ns = json!({"metadata": {"name": "ns", "labels": {"env": "prod"}, "managedFields": []}});
        let inputs = Inputs { request: &r, matched: deployments, params: None, namespace: Some(&ns), authorizer: None };
        let vars = variables(&[
            ("replicas", "object.spec.replicas"),
            ("double", "variables.replicas * 2"),
            ("broken", "object.spec.nope"),
            ("never", "1 / 0"),
        ]);
        let names: Vec<String> = vars.iter().map(|v| v.name.clone()).collect();
        let decls = Decls { variables: Some(&names), ..Default::default() };
        library::with_scope(&bindings(&inputs), |scope| {
            let act = Activation::new(scope, &vars, RUNTIME_COST_BUDGET);
            let eval = |src: &str| act.evaluate(&compile(src, decls, Want::Any));
            assert_eq!(eval("variables.double == 6 && oldObject == null"), Ok(Value::Bool(true)));
            assert_eq!(
                eval(
                    "request.operation == 'CREATE' && request.userInfo.username == 'alice' && request.kind.kind == 'Deployment' && request.resource.resource == 'deployments' && request.namespace == 'ns'"
                ),
                Ok(Value::Bool(true))
            );
            assert_eq!(
                eval("namespaceObject.metadata.labels.env == 'prod' && !has(namespaceObject.metadata.managedFields)"),
                Ok(Value::Bool(true))
            );
            assert_eq!(
                eval("variables.broken == 1"),
                Err(Failure::Error(
                    "expression 'variables.broken == 1' resulted in error: composited variable \"broken\" fails to evaluate: no such key: nope".into()
                ))
            );
            // A failing variable that is never read does not matter.
            assert_eq!(eval("true"), Ok(Value::Bool(true)));
            assert!(act.values.borrow()[3].is_none(), "an unread variable is not evaluated");
        });
    }

    #[test]
    fn the_budget_is_shared_by_the_scope() {
        let vars = variables(&[]);
        library::with_scope(&[], |scope| {
            let act = Activation::new(scope, &vars, 30);
            let c = compile("[1, 2, 3].all(x, x > 0)", Decls::default(), Want::Bool);
            assert_eq!(act.evaluate(&c), Ok(Value::Bool(true)));
            assert_eq!(act.evaluate(&c), Err(Failure::OutOfBudget));
        });
    }
}
