//! The authorizer library of admission expressions (upstream `k8s.io/apiserver/pkg/cel/library/authz.go`):
//! `authorizer.group('apps').resource('deployments').namespace('ns').name('x').check('create').allowed()`,
//! `authorizer.path('/healthz').check('get')`, `authorizer.serviceAccount('ns', 'sa')`, the decision's `allowed()`,
//! `reason()`, `errored()` and `error()`, and `authorizer.requestResource` (the request's own resource).
//!
//! The authorizer is the apiserver's chain, asked synchronously (it answers from memory). Upstream's
//! `fieldSelector()`/`labelSelector()` on resource checks are not provided (an expression naming them is refused
//! at compile time as an undeclared reference).

use std::fmt;
use std::sync::Arc;

use kube_cel::cel::objects::{Key, Map, Opaque};
use kube_cel::cel::{Context, ExecutionError, FunctionContext, Value};

use crate::auth::UserInfo;
use crate::authorization::{Attributes, Decision};

/// The authorizer chain as expressions call it.
pub type AuthorizeFn = Arc<dyn Fn(&Attributes) -> (Decision, String) + Send + Sync>;

/// The functions this library adds (method names, called on the values below).
pub const FUNCTIONS: &[&str] = &[
    "path",
    "group",
    "serviceAccount",
    "resource",
    "subresource",
    "namespace",
    "name",
    "check",
    "allowed",
    "reason",
    "errored",
    "error",
];

/// The hidden entry of the `authorizer` map holding the authorizer itself (not selectable from CEL source).
const SELF_KEY: &str = "@authorizer";

/// An authorizer for one user (`kubernetes.authorization.Authorizer`).
#[derive(Clone)]
pub struct Authz {
    user: UserInfo,
    authorize: AuthorizeFn,
}

impl fmt::Debug for Authz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Authorizer({})", self.user.username)
    }
}

impl PartialEq for Authz {
    fn eq(&self, other: &Self) -> bool {
        self.user == other.user && Arc::ptr_eq(&self.authorize, &other.authorize)
    }
}

impl Eq for Authz {}

impl Opaque for Authz {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.Authorizer"
    }
}

/// `authorizer.path(...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PathCheck {
    authz: Authz,
    path: String,
}

impl Opaque for PathCheck {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.PathCheck"
    }
}

/// `authorizer.group(...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct GroupCheck {
    authz: Authz,
    group: String,
}

impl Opaque for GroupCheck {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.GroupCheck"
    }
}

/// `authorizer.group(...).resource(...)` and its refinements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceCheck {
    authz: Authz,
    group: String,
    resource: String,
    subresource: String,
    namespace: String,
    name: String,
}

impl Opaque for ResourceCheck {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.ResourceCheck"
    }
}

/// The answer of a check (`kubernetes.authorization.Decision`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct AuthzDecision {
    decision: Decision,
    reason: String,
}

impl Opaque for AuthzDecision {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.Decision"
    }
}

impl Authz {
    pub fn new(user: UserInfo, authorize: AuthorizeFn) -> Self {
        Authz { user, authorize }
    }

    /// The `authorizer` variable: the authorizer, with `requestResource` the check of the request's own resource.
    pub fn variable(self, group: &str, resource: &str, subresource: &str, namespace: &str, name: &str) -> Value {
        let request = ResourceCheck {
            authz: self.clone(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        let entries = [
            (Key::String(Arc::new("requestResource".into())), Value::Opaque(Arc::new(request))),
            (Key::String(Arc::new(SELF_KEY.into())), Value::Opaque(Arc::new(self))),
        ];
        Value::Map(Map { map: Arc::new(entries.into_iter().collect()) })
    }

    fn decide(&self, a: Attributes) -> AuthzDecision {
        let (decision, reason) = (self.authorize)(&a);
        AuthzDecision { decision, reason }
    }

    fn attributes(&self, verb: &str) -> Attributes {
        Attributes {
            user: self.user.clone(),
            verb: verb.into(),
            resource_request: false,
            path: String::new(),
            api_group: String::new(),
            api_version: String::new(),
            namespace: String::new(),
            resource: String::new(),
            subresource: String::new(),
            name: String::new(),
            field_selector: None,
        }
    }
}

/// Adds the library's functions to an environment.
pub fn register(ctx: &mut Context<'_>) {
    ctx.add_function("path", path);
    ctx.add_function("group", group);
    ctx.add_function("serviceAccount", service_account);
    ctx.add_function("resource", resource);
    ctx.add_function("subresource", |ftx: &FunctionContext<'_, '_>| refine(ftx, |c, s| c.subresource = s));
    ctx.add_function("namespace", |ftx: &FunctionContext<'_, '_>| refine(ftx, |c, s| c.namespace = s));
    ctx.add_function("name", |ftx: &FunctionContext<'_, '_>| refine(ftx, |c, s| c.name = s));
    ctx.add_function("check", check);
    ctx.add_function("allowed", |ftx: &FunctionContext<'_, '_>| {
        Ok(Value::Bool(this::<AuthzDecision>(ftx)?.decision == Decision::Allow))
    });
    ctx.add_function("reason", |ftx: &FunctionContext<'_, '_>| {
        Ok(Value::String(Arc::new(this::<AuthzDecision>(ftx)?.reason)))
    });
    // The chain answers from memory and never fails: a decision is never an error.
    ctx.add_function("errored", |ftx: &FunctionContext<'_, '_>| {
        this::<AuthzDecision>(ftx)?;
        Ok(Value::Bool(false))
    });
    ctx.add_function("error", |ftx: &FunctionContext<'_, '_>| {
        this::<AuthzDecision>(ftx)?;
        Ok(Value::String(Arc::new(String::new())))
    });
}

/// The receiver as a `T` (the `authorizer` map stands for its authorizer).
fn this<T: Clone + 'static>(ftx: &FunctionContext<'_, '_>) -> Result<T, ExecutionError> {
    let target = match &ftx.this {
        Some(Value::Map(m)) => m.map.get(&Key::String(Arc::new(SELF_KEY.into()))).cloned(),
        other => other.clone(),
    };
    match target {
        Some(Value::Opaque(o)) => {
            o.downcast_ref::<T>().cloned().ok_or_else(|| ftx.error(format!("no such overload: {}", ftx.name)))
        }
        _ => Err(ftx.error(format!("no such overload: {}", ftx.name))),
    }
}

fn string_arg(ftx: &FunctionContext<'_, '_>, i: usize, count: usize) -> Result<String, ExecutionError> {
    if ftx.args.len() != count {
        return Err(ExecutionError::invalid_argument_count(count, ftx.args.len()));
    }
    match ftx.ptx.resolve(&ftx.args[i])? {
        Value::String(s) => Ok(s.to_string()),
        _ => Err(ftx.error(format!("no such overload: {}", ftx.name))),
    }
}

fn opaque(v: impl Opaque) -> Value {
    Value::Opaque(Arc::new(v))
}

fn path(ftx: &FunctionContext<'_, '_>) -> Result<Value, ExecutionError> {
    let authz = this::<Authz>(ftx)?;
    Ok(opaque(PathCheck { authz, path: string_arg(ftx, 0, 1)? }))
}

fn group(ftx: &FunctionContext<'_, '_>) -> Result<Value, ExecutionError> {
    let authz = this::<Authz>(ftx)?;
    Ok(opaque(GroupCheck { authz, group: string_arg(ftx, 0, 1)? }))
}

/// `authorizer.serviceAccount(namespace, name)`: an authorizer for that service account's user.
fn service_account(ftx: &FunctionContext<'_, '_>) -> Result<Value, ExecutionError> {
    let authz = this::<Authz>(ftx)?;
    let (ns, name) = (string_arg(ftx, 0, 2)?, string_arg(ftx, 1, 2)?);
    let user = UserInfo {
        username: format!("system:serviceaccount:{ns}:{name}"),
        groups: vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")],
        ..Default::default()
    };
    Ok(opaque(Authz { user, authorize: authz.authorize }))
}

fn resource(ftx: &FunctionContext<'_, '_>) -> Result<Value, ExecutionError> {
    let g = this::<GroupCheck>(ftx)?;
    Ok(opaque(ResourceCheck {
        authz: g.authz,
        group: g.group,
        resource: string_arg(ftx, 0, 1)?,
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
    }))
}

fn refine(ftx: &FunctionContext<'_, '_>, set: fn(&mut ResourceCheck, String)) -> Result<Value, ExecutionError> {
    let mut c = this::<ResourceCheck>(ftx)?;
    set(&mut c, string_arg(ftx, 0, 1)?);
    Ok(opaque(c))
}

/// `check(verb)` on a path or resource check: the chain's decision.
fn check(ftx: &FunctionContext<'_, '_>) -> Result<Value, ExecutionError> {
    let verb = string_arg(ftx, 0, 1)?;
    if let Ok(p) = this::<PathCheck>(ftx) {
        let mut a = p.authz.attributes(&verb);
        a.path = p.path;
        return Ok(opaque(p.authz.decide(a)));
    }
    let c = this::<ResourceCheck>(ftx)?;
    let mut a = c.authz.attributes(&verb);
    a.resource_request = true;
    a.api_group = c.group;
    a.api_version = "*".into();
    a.resource = c.resource;
    a.subresource = c.subresource;
    a.namespace = c.namespace;
    a.name = c.name;
    Ok(opaque(c.authz.decide(a)))
}
