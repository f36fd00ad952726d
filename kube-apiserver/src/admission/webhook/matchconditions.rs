//! A webhook's `matchConditions` (upstream `webhook/matchconditions/matcher.go`): CEL conditions over `object`,
//! `oldObject`, `request` and `authorizer`, compiled with the configuration. A condition that is false skips the
//! webhook (whatever errors others had); errors without a false condition are decided by the failurePolicy: Fail
//! refuses the request with 403, Ignore skips the webhook.

use serde_json::Value as Json;

use crate::admission::Request;
use crate::admission::cel::activation::{self, Activation, Failure, Inputs};
use crate::admission::cel::compile::{Compiled, Decls, Want, compile};
use crate::apiextensions::cel::authz::AuthorizeFn;
use crate::apiextensions::cel::library;

/// The compiled conditions of one webhook (or of one ValidatingAdmissionPolicy).
#[derive(Debug, Default)]
pub struct MatchConditions {
    conditions: Vec<(String, Compiled)>,
}

/// What the conditions say about a request (upstream `MatchResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Matches,
    /// The first false condition, by name.
    NoMatch(String),
    /// Evaluation errors under failurePolicy Fail.
    Error(String),
}

impl MatchConditions {
    /// Compiles `matchConditions` as written (`params` is declared for policies with a paramKind).
    pub fn compile(conditions: &[Json], params: bool, variables: Option<&[String]>) -> Self {
        let decls = Decls { params, authorizer: true, variables };
        let conditions = conditions
            .iter()
            .map(|c| {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                (name, compile(c["expression"].as_str().unwrap_or_default(), decls, Want::Bool))
            })
            .collect();
        MatchConditions { conditions }
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Evaluates the conditions in an activation (a policy's, shared with its validations).
    pub fn evaluate(&self, act: &Activation<'_, '_>, ignore_failures: bool) -> Match {
        let mut errors = Vec::new();
        for (name, c) in &self.conditions {
            match act.evaluate(c) {
                Ok(kube_cel::cel::Value::Bool(false)) => return Match::NoMatch(name.clone()),
                Ok(kube_cel::cel::Value::Bool(true)) => {}
                Ok(other) => errors.push(format!(
                    "expression '{}' resulted in error: no such overload: expected bool, got {}",
                    c.source,
                    library::type_name(&other)
                )),
                Err(Failure::Error(e)) => errors.push(e),
                Err(Failure::OutOfBudget) => {
                    return if ignore_failures {
                        Match::NoMatch(String::new())
                    } else {
                        Match::Error(activation::OUT_OF_BUDGET.into())
                    };
                }
            }
        }
        match errors.len() {
            0 => Match::Matches,
            _ if ignore_failures => Match::NoMatch(String::new()),
            1 => Match::Error(errors.remove(0)),
            _ => Match::Error(format!("[{}]", errors.join(", "))),
        }
    }

    /// Evaluates a webhook's conditions on a request (`object` as the webhook would receive it).
    pub fn matches(
        &self,
        r: &Request<'_>,
        object: Option<&Json>,
        authorizer: Option<AuthorizeFn>,
        ignore_failures: bool,
    ) -> Match {
        let r = Request { object, ..*r };
        let inputs = Inputs { request: &r, matched: r.resource, params: None, namespace: None, authorizer };
        library::with_scope(&activation::bindings(&inputs), |scope| {
            let act = Activation::new(scope, &[], activation::RUNTIME_COST_BUDGET);
            self.evaluate(&act, ignore_failures)
        })
    }
}

#[cfg(test)]
mod tests {
    //! Upstream's `matchconditions/matcher_test.go` cases.
    use super::*;
    use crate::admission::Operation;
    use crate::auth::UserInfo;
    use serde_json::json;

    fn run(conditions: Json, ignore: bool) -> Match {
        let pods = api_types::resources::find("", "v1", "pods").unwrap();
        let user = UserInfo { username: "alice".into(), ..Default::default() };
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        let r = Request {
            operation: Operation::Create,
            resource: pods,
            subresource: "",
            namespace: "ns",
            name: "p",
            object: Some(&pod),
            old: None,
            user: &user,
            dry_run: false,
        };
        let authorize: AuthorizeFn = std::sync::Arc::new(|a: &crate::authorization::Attributes| {
            let allowed = a.resource == "pods" && a.verb == "get";
            let d =
                if allowed { crate::authorization::Decision::Allow } else { crate::authorization::Decision::NoOpinion };
            (d, if allowed { String::new() } else { "not allowed".into() })
        });
        MatchConditions::compile(conditions.as_array().unwrap(), false, None).matches(
            &r,
            Some(&pod),
            Some(authorize),
            ignore,
        )
    }

    #[test]
    fn conditions() {
        let c = |name: &str, e: &str| json!({"name": name, "expression": e});
        // No conditions and true conditions match.
        assert_eq!(run(json!([]), false), Match::Matches);
        assert_eq!(run(json!([c("a", "true"), c("b", "object.metadata.labels.app == 'web'")]), false), Match::Matches);
        // A false condition skips, naming the condition, even after an error.
        assert_eq!(
            run(json!([c("err", "object.nope == 1"), c("no", "request.userInfo.username == 'bob'")]), false),
            Match::NoMatch("no".into())
        );
        // Errors without a false condition: Fail errors, Ignore skips.
        let errs = json!([c("t", "true"), c("err", "object.nope == 1")]);
        assert_eq!(
            run(errs.clone(), false),
            Match::Error("expression 'object.nope == 1' resulted in error: no such key: nope".into())
        );
        assert_eq!(run(errs, true), Match::NoMatch(String::new()));
        let two = json!([c("e1", "object.a == 1"), c("e2", "object.b == 1")]);
        assert_eq!(
            run(two, false),
            Match::Error("[expression 'object.a == 1' resulted in error: no such key: a, expression 'object.b == 1' resulted in error: no such key: b]".into())
        );
        // The authorizer answers for the requesting user.
        assert_eq!(
            run(json!([c("authz", "authorizer.group('').resource('pods').check('get').allowed()")]), false),
            Match::Matches
        );
        assert_eq!(
            run(json!([c("authz", "authorizer.requestResource.check('create').allowed()")]), false),
            Match::NoMatch("authz".into())
        );
        assert_eq!(
            run(json!([c("r", "authorizer.requestResource.check('create').reason() == 'not allowed'")]), false),
            Match::Matches
        );
    }
}
