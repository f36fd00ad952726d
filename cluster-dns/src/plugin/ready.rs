//! The `ready` plugin: `/ready` (default `:8181`) answers 200 OK once every plugin with a readiness state (the
//! kubernetes plugin, after its first list) is ready, 503 with the names of those that are not otherwise.

use super::Setup;
use crate::corefile::Directive;

/// `ready [ADDRESS]`.
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<(), String> {
    if d.args.len() > 1 || !d.block.is_empty() {
        return Err(s.err(d, d.line, "Wrong argument count or unexpected line ending after 'ready'"));
    }
    let addr = d.args.first().cloned().unwrap_or_else(|| ":8181".into());
    crate::http::resolve(&addr).map_err(|e| s.err(d, d.line, e))?;
    if s.settings.ready.as_ref().is_some_and(|a| a != &addr) {
        return Err(s.err(d, d.line, "ready plugin can only be specified once per address"));
    }
    s.settings.ready = Some(addr);
    Ok(())
}
