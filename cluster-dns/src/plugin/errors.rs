//! The `errors` plugin: logs the errors the rest of the chain returns, as CoreDNS does
//! (`[ERROR] plugin/errors: 2 example.org. A: plugin/forward: ...`).

use super::{Answer, BoxFuture, Next, Plugin, Setup};
use crate::corefile::Directive;
use crate::request::Request;

pub struct Errors;

impl Plugin for Errors {
    fn name(&self) -> &'static str {
        "errors"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let answer = next.serve(&mut *req).await;
            if let Err(e) = &answer {
                tracing::error!(
                    "plugin/errors: {} {} {}: {e}",
                    u16::from(e.rcode),
                    req.name(),
                    crate::metrics::qtype_label(req.qtype())
                );
            }
            answer
        })
    }
}

/// `errors` (logging to standard error; the `consolidate` and `stacktrace` options are not offered).
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<Errors, String> {
    if d.args.len() > 1 || (d.args.len() == 1 && d.args[0] != "stdout") {
        return Err(s.err(d, d.line, "Wrong argument count or unexpected line ending after 'errors'"));
    }
    if let Some(l) = d.block.first() {
        return Err(s.err(d, l.line, format!("unknown property '{}'", l.tokens[0])));
    }
    Ok(Errors)
}
