//! Compilation of admission expressions (upstream `admission/plugin/cel/compile.go`): parsed once, checked against
//! the admission environment (`object`, `oldObject`, `request`, `namespaceObject`, and as declared `params`,
//! `authorizer`, `variables`; the library's functions), their result type checked where it is evident, and
//! instrumented for the runtime cost budget. Errors read as cel-go's (`compilation failed: ERROR: <input>:1:1:
//! undeclared reference to 'x' (in container '')` with the source snippet).
//!
//! The interpreter has no type checker: beyond identifiers, functions and declared variables, types are checked
//! only where evident (literals, operators), and the rest fails at evaluation, as a runtime error.

use kube_cel::cel::common::ast::{CallExpr, EntryExpr, Expr};
use kube_cel::cel::parser::{Expression, Parser};

use crate::apiextensions::cel::compile::{
    Program, cel_go_snippets, count_nodes, instrument, issue, obvious_type, regex_constants,
};
use crate::apiextensions::cel::{authz, library};

pub const OBJECT: &str = "object";
pub const OLD_OBJECT: &str = "oldObject";
pub const REQUEST: &str = "request";
pub const NAMESPACE_OBJECT: &str = "namespaceObject";
pub const PARAMS: &str = "params";
pub const AUTHORIZER: &str = "authorizer";
pub const VARIABLES: &str = "variables";

/// Which optional variables an expression may use (upstream `OptionalVariableDeclarations` plus composition).
#[derive(Debug, Clone, Copy, Default)]
pub struct Decls<'a> {
    pub params: bool,
    pub authorizer: bool,
    /// The variables declared before this expression (None: no `variables` at all, as in webhook conditions).
    pub variables: Option<&'a [String]>,
}

/// The types an expression must evaluate to (upstream `ReturnTypes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Bool,
    String,
    /// An audit annotation's value: string or null.
    StringOrNull,
    /// A variable: anything.
    Any,
}

/// A compiled expression, or why it did not compile.
#[derive(Debug)]
pub struct Compiled {
    pub source: String,
    pub program: Result<Program, String>,
    /// The `variables.<name>` it reads.
    pub variables: Vec<String>,
}

impl Compiled {
    pub fn error(&self) -> Option<&str> {
        self.program.as_ref().err().map(String::as_str)
    }
}

/// Compiles one expression.
pub fn compile(src: &str, decls: Decls<'_>, want: Want) -> Compiled {
    let mut variables = Vec::new();
    let program = compile_program(src, decls, want, &mut variables);
    Compiled { source: src.to_string(), program, variables }
}

fn compile_program(src: &str, decls: Decls<'_>, want: Want, variables: &mut Vec<String>) -> Result<Program, String> {
    let expr = Parser::new()
        .enable_optional_syntax(true)
        .parse(src)
        .map_err(|e| format!("compilation failed: {}", cel_go_snippets(&e.to_string())))?;
    let mut checker = Checker { decls, src, issues: Vec::new(), scopes: Vec::new(), variables };
    checker.walk(&expr);
    if !checker.issues.is_empty() {
        return Err(format!("compilation failed: {}", checker.issues.join("\n")));
    }
    if let Some(got) = obvious_type(&expr).filter(|t| *t != "number") {
        let fits = match want {
            Want::Bool => got == "bool",
            Want::String => got == "string",
            Want::StringOrNull => got == "string" || got == "null_type",
            Want::Any => true,
        };
        if !fits {
            return Err(match want {
                Want::Bool => format!("must evaluate to bool but got {got}"),
                Want::String => format!("must evaluate to string but got {got}"),
                _ => format!("must evaluate to one of [string null_type] but got {got}"),
            });
        }
    }
    if let Some(e) = regex_constants(&expr, src) {
        return Err(e);
    }
    let expr = instrument(expr);
    let static_cost = count_nodes(&expr);
    Ok(Program { expr, static_cost })
}

struct Checker<'a, 'e> {
    decls: Decls<'a>,
    src: &'a str,
    issues: Vec<String>,
    /// Comprehension variables in scope.
    scopes: Vec<&'e str>,
    variables: &'a mut Vec<String>,
}

impl<'e> Checker<'_, 'e> {
    fn undeclared(&mut self, name: &str) {
        let msg = format!("undeclared reference to '{name}' (in container '')");
        self.issues.push(issue(self.src, name, &msg));
    }

    fn ident(&mut self, name: &str) {
        if self.scopes.contains(&name) || name.starts_with('@') {
            return;
        }
        let known = match name {
            OBJECT | OLD_OBJECT | REQUEST | NAMESPACE_OBJECT => true,
            PARAMS => self.decls.params,
            AUTHORIZER => self.decls.authorizer,
            VARIABLES => self.decls.variables.is_some(),
            "int" | "uint" | "double" | "bool" | "string" | "bytes" | "list" | "map" | "null_type" | "type"
            | "google" => true,
            _ => false,
        };
        if !known {
            self.undeclared(name);
        }
    }

    fn walk(&mut self, e: &'e Expression) {
        match &e.expr {
            Expr::Ident(name) => self.ident(name),
            Expr::Select(s) => {
                if let (Expr::Ident(v), Some(declared)) = (&s.operand.expr, self.decls.variables)
                    && v == VARIABLES
                    && !self.scopes.contains(&VARIABLES)
                {
                    if declared.contains(&s.field) {
                        if !self.variables.contains(&s.field) {
                            self.variables.push(s.field.clone());
                        }
                    } else {
                        let msg = format!("undefined field '{}'", s.field);
                        self.issues.push(issue(self.src, &format!(".{}", s.field), &msg));
                    }
                    return;
                }
                self.walk(&s.operand);
            }
            Expr::Call(c) => self.call(c),
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range);
                self.walk(&c.accu_init);
                let before = self.scopes.len();
                self.scopes.push(c.iter_var.as_str());
                if let Some(v2) = &c.iter_var2 {
                    self.scopes.push(v2.as_str());
                }
                self.scopes.push(c.accu_var.as_str());
                self.walk(&c.loop_cond);
                self.walk(&c.loop_step);
                self.walk(&c.result);
                self.scopes.truncate(before);
            }
            Expr::List(l) => l.elements.iter().for_each(|x| self.walk(x)),
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.walk(&me.key);
                        self.walk(&me.value);
                    }
                }
            }
            _ => {}
        }
    }

    fn call(&mut self, c: &'e CallExpr) {
        let name = c.func_name.as_str();
        let operator = name.starts_with('_') || name.starts_with('@') || name.starts_with('!') || name == "-_";
        let qualified = match c.target.as_deref().map(|t| &t.expr) {
            Some(Expr::Ident(ns)) => library::FUNCTIONS.contains(&format!("{ns}.{name}").as_str()),
            _ => false,
        };
        let authorizer = self.decls.authorizer && authz::FUNCTIONS.contains(&name);
        if !operator && !qualified && !authorizer && !library::FUNCTIONS.contains(&name) {
            self.undeclared(name);
        }
        if let Some(t) = &c.target
            && !qualified
        {
            self.walk(t);
        }
        for a in &c.args {
            self.walk(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str, decls: Decls<'_>, want: Want) -> String {
        compile(src, decls, want).error().unwrap_or_default().to_string()
    }

    #[test]
    fn environment_and_result_types() {
        let all = Decls { params: true, authorizer: true, variables: Some(&[]) };
        for ok in [
            "object.spec.replicas > 1",
            "oldObject == null || request.operation == 'UPDATE'",
            "namespaceObject.metadata.name != '' && params.data.x == 'y'",
            "authorizer.group('apps').resource('deployments').check('create').allowed()",
            "authorizer.requestResource.check('get').reason() == ''",
            "object.spec.template.spec.containers.all(c, c.image.startsWith('x'))",
        ] {
            assert_eq!(err(ok, all, Want::Bool), "", "{ok}");
        }
        let none = Decls::default();
        assert_eq!(
            err("params.x == 1", none, Want::Bool),
            "compilation failed: ERROR: <input>:1:1: undeclared reference to 'params' (in container '')\n | params.x == 1\n | ^"
        );
        assert!(err("authorizer.path('/x').check('get').allowed()", none, Want::Bool).contains("'authorizer'"));
        assert!(err("variables.x", none, Want::Bool).contains("undeclared reference to 'variables'"));
        assert!(err("object.x.nope()", all, Want::Bool).contains("undeclared reference to 'nope'"));
        assert_eq!(err("'a'", all, Want::Bool), "must evaluate to bool but got string");
        assert_eq!(err("1 < 2", all, Want::String), "must evaluate to string but got bool");
        assert_eq!(err("1", all, Want::StringOrNull), "must evaluate to one of [string null_type] but got int");
        assert_eq!(err("null", all, Want::StringOrNull), "");
        assert!(
            err("object.x >", all, Want::Bool).starts_with("compilation failed: ERROR: <input>:1:11: Syntax error")
        );
    }

    #[test]
    fn variables_must_be_declared_before_use() {
        let declared = ["a".to_string()];
        let decls = Decls { variables: Some(&declared), ..Default::default() };
        let c = compile("variables.a > 1 && variables.a < 3", decls, Want::Bool);
        assert!(c.program.is_ok());
        assert_eq!(c.variables, ["a"]);
        assert_eq!(
            err("variables.b == 1", decls, Want::Bool),
            "compilation failed: ERROR: <input>:1:10: undefined field 'b'\n | variables.b == 1\n | .........^"
        );
    }
}
