//! The CEL environment of validation rules (upstream `k8s.io/apiserver/pkg/cel/environment` with the libraries of
//! `apiserver/pkg/cel/library`), on the `cel` interpreter with `kube-cel`'s Kubernetes libraries (lists, regex, url,
//! ip/cidr, semver, quantity, format, sets), plus what the interpreter lacks: rune-counting `size()`, `type()` and
//! the type identifiers, `dyn()`, and a runtime cost budget: every comprehension iteration is charged (compile time
//! rewrites each loop condition through [`COST_FUNCTION`]) so a rule over large lists stops at the per-call limit or
//! the per-object deadline instead of holding a worker thread.
//!
//! The library is the only module that names the CEL implementation's evaluation API, so replacing it stays local.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_cel::KubeCelExt;
use kube_cel::cel::objects::{Key, Map, ValueType};
use kube_cel::cel::parser::Expression;
use kube_cel::cel::{Context, ExecutionError, FunctionContext, Value};

/// The function every comprehension's loop condition is wrapped in: charges one unit per iteration.
pub const COST_FUNCTION: &str = "@k8s_cost";

/// upstream `celconfig.PerCallLimit`: the cost one rule evaluation may spend.
pub const PER_CALL_LIMIT: u64 = 1_000_000;

/// upstream `celconfig.RuntimeCELCostBudget`: the cost all rules of one object may spend.
pub const RUNTIME_COST_BUDGET: i64 = 10_000_000;

/// Wall-clock bound on the evaluation of one object's rules, checked every [`CHECK_FREQUENCY`] iterations (upstream
/// interrupts a comprehension when the request context ends).
pub const EVALUATION_DEADLINE: Duration = Duration::from_secs(2);

/// upstream `celconfig.CheckFrequency`.
const CHECK_FREQUENCY: u64 = 100;

/// Type identifiers bound as values so `type(x) == int` works (`type()` returns the same names).
const TYPE_NAMES: &[&str] = &["int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"];

/// Every function the environment provides (the interpreter's standard library and `kube-cel`'s, plus ours): a rule
/// naming another is refused at compile time with upstream's "undeclared reference". Macros (`has`, `all`,
/// `exists`, `exists_one`, `map`, `filter`) are expanded by the parser and never appear as calls.
pub const FUNCTIONS: &[&str] = &[
    // cel: standard library.
    "contains",
    "size",
    "max",
    "min",
    "startsWith",
    "endsWith",
    "string",
    "bytes",
    "double",
    "int",
    "uint",
    "optional.none",
    "optional.of",
    "optional.ofNonZeroValue",
    "value",
    "hasValue",
    "or",
    "orValue",
    "matches",
    "duration",
    "timestamp",
    "getFullYear",
    "getMonth",
    "getDayOfYear",
    "getDayOfMonth",
    "getDate",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
    // kube-cel: strings, lists, sets, regex, url, ip/cidr, semver, format, quantity, jsonpatch, math, encoders.
    "add",
    "asApproximateFloat",
    "asInteger",
    "base64.decode",
    "base64.encode",
    "charAt",
    "cidr",
    "compareTo",
    "containsCIDR",
    "containsIP",
    "distinct",
    "family",
    "find",
    "findAll",
    "first",
    "flatten",
    "format",
    "format.byte",
    "format.date",
    "format.datetime",
    "format.dns1035Label",
    "format.dns1035LabelPrefix",
    "format.dns1123Label",
    "format.dns1123LabelPrefix",
    "format.dns1123Subdomain",
    "format.dns1123SubdomainPrefix",
    "format.labelValue",
    "format.named",
    "format.qualifiedName",
    "format.uri",
    "format.uuid",
    "getEscapedPath",
    "getHost",
    "getHostname",
    "getPort",
    "getQuery",
    "getScheme",
    "indexOf",
    "ip",
    "ip.isCanonical",
    "isCIDR",
    "isCIDRv4",
    "isCIDRv6",
    "isGlobalUnicast",
    "isGreaterThan",
    "isIP",
    "isIPv4",
    "isIPv6",
    "isInteger",
    "isLessThan",
    "isLinkLocalMulticast",
    "isLinkLocalUnicast",
    "isLoopback",
    "isQuantity",
    "isSemver",
    "isSorted",
    "isURL",
    "isUnspecified",
    "join",
    "jsonpatch.escapeKey",
    "last",
    "lastIndexOf",
    "lists.range",
    "lowerAscii",
    "major",
    "masked",
    "math.abs",
    "math.bitAnd",
    "math.bitNot",
    "math.bitOr",
    "math.bitShiftLeft",
    "math.bitShiftRight",
    "math.bitXor",
    "math.ceil",
    "math.floor",
    "math.greatest",
    "math.isFinite",
    "math.isInf",
    "math.isNaN",
    "math.least",
    "math.round",
    "math.sign",
    "math.sqrt",
    "math.trunc",
    "minor",
    "patch",
    "prefixLength",
    "quantity",
    "replace",
    "reverse",
    "semver",
    "sets.contains",
    "sets.equivalent",
    "sets.intersects",
    "sign",
    "slice",
    "sort",
    "split",
    "strings.quote",
    "sub",
    "substring",
    "sum",
    "trim",
    "upperAscii",
    "url",
    "validate",
    // Ours.
    "type",
    "dyn",
];

/// The per-thread evaluation state: the remaining cost of the running call and the object's deadline.
struct Budget {
    remaining: Cell<u64>,
    spent: Cell<u64>,
    deadline: Cell<Option<Instant>>,
    exceeded: Cell<bool>,
}

thread_local! {
    /// The environment, built once per thread (the interpreter's context is neither `Send` nor `Sync`).
    static BASE: Context<'static> = base_context();
    static BUDGET: Budget = const {
        Budget { remaining: Cell::new(0), spent: Cell::new(0), deadline: Cell::new(None), exceeded: Cell::new(false) }
    };
}

fn base_context() -> Context<'static> {
    let mut ctx = Context::default().with_all();
    ctx.add_function("size", size);
    ctx.add_function("type", type_of);
    ctx.add_function("dyn", dyn_value);
    ctx.add_function(COST_FUNCTION, charge);
    super::authz::register(&mut ctx);
    for name in TYPE_NAMES {
        ctx.add_variable_from_value(*name, Value::String(Arc::new(name.to_string())));
    }
    let types = |names: &[&str], prefix: &str| {
        let map = names
            .iter()
            .map(|n| (Key::String(Arc::new(n.to_string())), Value::String(Arc::new(format!("{prefix}{n}")))))
            .collect::<std::collections::HashMap<_, _>>();
        Value::Map(Map { map: Arc::new(map) })
    };
    let protobuf = types(&["Duration", "Timestamp"], "google.protobuf.");
    let google = [(Key::String(Arc::new("protobuf".into())), protobuf)].into_iter().collect();
    ctx.add_variable_from_value("google", Value::Map(Map { map: Arc::new(google) }));
    ctx
}

/// `size()`: strings count code points (the interpreter counts bytes).
fn size(ftx: &FunctionContext<'_, '_>) -> Result<i64, ExecutionError> {
    Ok(match &operand(ftx)? {
        Value::String(s) => s.chars().count() as i64,
        Value::List(l) => l.len() as i64,
        Value::Map(m) => m.map.len() as i64,
        Value::Bytes(b) => b.len() as i64,
        other => return Err(ftx.error(format!("no such overload: size({})", type_name(other)))),
    })
}

/// `type(x)`: the name of the value's type, comparable with the type identifiers.
fn type_of(ftx: &FunctionContext<'_, '_>) -> Result<Value, ExecutionError> {
    Ok(Value::String(Arc::new(type_name(&operand(ftx)?).to_string())))
}

/// `dyn(x)`: x (the interpreter is dynamically typed already).
fn dyn_value(ftx: &FunctionContext<'_, '_>) -> Result<Value, ExecutionError> {
    operand(ftx)
}

/// The receiver of a method call or the single argument of a global one; an argument's evaluation error (`no
/// such key`) propagates as is.
fn operand(ftx: &FunctionContext<'_, '_>) -> Result<Value, ExecutionError> {
    match (&ftx.this, ftx.args) {
        (Some(this), []) => Ok(this.clone()),
        (None, [arg]) => ftx.ptx.resolve(arg),
        (_, args) => Err(ExecutionError::invalid_argument_count(1, args.len())),
    }
}

/// CEL's name of a value's type.
pub fn type_name(v: &Value) -> &'static str {
    match v.type_of() {
        ValueType::List => "list",
        ValueType::Map => "map",
        ValueType::Function => "function",
        ValueType::Int => "int",
        ValueType::UInt => "uint",
        ValueType::Float => "double",
        ValueType::String => "string",
        ValueType::Bytes => "bytes",
        ValueType::Bool => "bool",
        ValueType::Duration => "google.protobuf.Duration",
        ValueType::Timestamp => "google.protobuf.Timestamp",
        ValueType::Opaque => "opaque",
        ValueType::Null => "null_type",
    }
}

/// One comprehension iteration: passes the loop condition through, or fails once the budget or deadline is gone.
fn charge(ftx: &FunctionContext<'_, '_>, cond: Value) -> Result<Value, ExecutionError> {
    let ok = BUDGET.with(|b| {
        if b.exceeded.get() {
            return false;
        }
        let spent = b.spent.get() + 1;
        b.spent.set(spent);
        let left = b.remaining.get();
        if left == 0 {
            b.exceeded.set(true);
            return false;
        }
        b.remaining.set(left - 1);
        if spent.is_multiple_of(CHECK_FREQUENCY) && b.deadline.get().is_some_and(|d| Instant::now() > d) {
            b.exceeded.set(true);
            return false;
        }
        true
    });
    if ok { Ok(cond) } else { Err(ftx.error(COST_EXCEEDED)) }
}

/// cel-go's error for a call over its cost limit.
pub const COST_EXCEEDED: &str = "operation cancelled: actual cost limit exceeded";

/// The outcome of one evaluation.
pub struct Evaluation {
    pub result: Result<Value, ExecutionError>,
    /// The cost spent (the expression's static cost plus one per comprehension iteration).
    pub cost: u64,
    /// The per-call limit or the deadline stopped the evaluation (the result is then meaningless).
    pub exceeded: bool,
}

/// Evaluates a compiled expression with `self` (and `oldSelf` when given) bound, within `limit` and `deadline`.
pub fn evaluate(
    expr: &Expression,
    static_cost: u64,
    vars: &[(&str, Value)],
    limit: u64,
    deadline: Option<Instant>,
) -> Evaluation {
    budgeted(static_cost, limit, deadline, || {
        BASE.with(|base| {
            let mut ctx = base.new_inner_scope();
            for (name, v) in vars {
                ctx.add_variable_from_value(*name, v.clone());
            }
            Value::resolve(expr, &ctx)
        })
    })
}

/// Runs one evaluation under the per-call `limit` and the `deadline`.
fn budgeted(
    static_cost: u64,
    limit: u64,
    deadline: Option<Instant>,
    run: impl FnOnce() -> Result<Value, ExecutionError>,
) -> Evaluation {
    if static_cost > limit {
        let error = ExecutionError::function_error(COST_FUNCTION, COST_EXCEEDED);
        return Evaluation { result: Err(error), cost: static_cost, exceeded: true };
    }
    BUDGET.with(|b| {
        b.remaining.set(limit - static_cost);
        b.spent.set(0);
        b.deadline.set(deadline);
        b.exceeded.set(false);
    });
    let result = run();
    let (spent, exceeded) = BUDGET.with(|b| (b.spent.get(), b.exceeded.get()));
    Evaluation { result, cost: static_cost + spent, exceeded }
}

/// Variables bound once for several evaluations (an admission activation: `object`, `request`, ...): converting
/// them to the interpreter's values is paid once, not per expression.
pub struct Scope<'a> {
    ctx: Context<'a>,
}

/// Runs `f` with a scope binding `vars`.
pub fn with_scope<R>(vars: &[(&str, Value)], f: impl FnOnce(&Scope<'_>) -> R) -> R {
    BASE.with(|base| {
        let mut ctx = base.new_inner_scope();
        for (name, v) in vars {
            ctx.add_variable_from_value(*name, v.clone());
        }
        f(&Scope { ctx })
    })
}

impl Scope<'_> {
    /// Evaluates a compiled expression in the scope, with `extra` bound on top, within `limit` and `deadline`.
    pub fn evaluate(
        &self,
        expr: &Expression,
        static_cost: u64,
        extra: &[(&str, Value)],
        limit: u64,
        deadline: Option<Instant>,
    ) -> Evaluation {
        budgeted(static_cost, limit, deadline, || {
            let mut ctx = self.ctx.new_inner_scope();
            for (name, v) in extra {
                ctx.add_variable_from_value(*name, v.clone());
            }
            Value::resolve(expr, &ctx)
        })
    }
}

/// A runtime error as cel-go words it (`no such key: x`, `index out of bounds: 3`, `division by zero`...).
pub fn error_text(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::NoSuchOverload => "no such overload".into(),
        ExecutionError::UndeclaredReference(r) => format!("undeclared reference to '{r}'"),
        ExecutionError::DivisionByZero(_) => "division by zero".into(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".into(),
        ExecutionError::Overflow(..) => "integer overflow".into(),
        ExecutionError::IndexOutOfBounds(i) => format!("index out of bounds: {}", scalar(i)),
        ExecutionError::FunctionError { message, .. } => message.clone(),
        ExecutionError::UnsupportedBinaryOperator(..)
        | ExecutionError::UnsupportedUnaryOperator(..)
        | ExecutionError::ValuesNotComparable(..)
        | ExecutionError::UnsupportedTargetType { .. }
        | ExecutionError::NotSupportedAsMethod { .. }
        | ExecutionError::UnexpectedType { .. } => format!("no such overload: {e}"),
        other => other.to_string(),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::String(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_cel::cel::parser::Parser;

    fn run(src: &str, limit: u64) -> Evaluation {
        let expr = Parser::new().enable_optional_syntax(true).parse(src).unwrap();
        let expr = super::super::compile::instrument(expr);
        evaluate(&expr, 1, &[], limit, None)
    }

    #[test]
    fn every_listed_function_is_provided() {
        // A name the environment lacks fails with UndeclaredReference(name); any other outcome means it resolved.
        for name in FUNCTIONS {
            let (target, func) = match name.split_once('.') {
                Some((ns, f)) => (format!("{ns}."), f),
                None => (String::new(), *name),
            };
            let got = std::panic::catch_unwind(|| run(&format!("{target}{func}()"), 10).result);
            if let Ok(Err(ExecutionError::UndeclaredReference(r))) = got {
                assert_ne!(r.as_str(), func, "{name} is not provided");
            }
        }
    }

    #[test]
    fn comprehensions_are_charged_and_bounded() {
        let e = run("[1, 2, 3].all(x, x > 0)", 100);
        assert_eq!(e.result.unwrap(), Value::Bool(true));
        assert_eq!(e.cost, 4);
        // 1000^3 iterations stop at the limit instead of running for minutes.
        let started = Instant::now();
        let e =
            run("lists.range(1000).all(x, lists.range(1000).all(y, lists.range(1000).all(z, x + y + z >= 0)))", 10_000);
        assert!(e.exceeded, "{:?}", e.result);
        assert!(started.elapsed() < Duration::from_secs(5));
        // An error swallowed by `||` still counts as exceeding the budget.
        let e = run("lists.range(100).all(x, lists.range(100).all(y, true)) || true", 50);
        assert!(e.exceeded);
    }

    #[test]
    fn sizes_count_code_points_and_types_compare() {
        assert_eq!(run("size('Rook takes 👑') == 12", 10).result.unwrap(), Value::Bool(true));
        assert_eq!(run("'Rook takes 👑'.size() == 12", 10).result.unwrap(), Value::Bool(true));
        assert_eq!(
            run("type(1) == int && type('a') == string && type(1.5) == double", 10).result.unwrap(),
            Value::Bool(true)
        );
        assert_eq!(run("type(duration('1s')) == google.protobuf.Duration", 10).result.unwrap(), Value::Bool(true));
        assert_eq!(run("dyn([1, 2]).sum() == 3", 10).result.unwrap(), Value::Bool(true));
    }
}
