//! The `health` plugin: `/health` answers 200 OK while the process runs (default `:8080`); `lameduck DURATION`
//! keeps serving that long after a shutdown signal so that clients move away first.

use super::{Setup, parse_duration};
use crate::corefile::Directive;

/// `health [ADDRESS] { lameduck DURATION }`.
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<(), String> {
    if d.args.len() > 1 {
        return Err(s.err(d, d.line, "Wrong argument count or unexpected line ending after 'health'"));
    }
    let addr = d.args.first().cloned().unwrap_or_else(|| ":8080".into());
    crate::http::resolve(&addr).map_err(|e| s.err(d, d.line, e))?;
    let mut lameduck = std::time::Duration::ZERO;
    for l in &d.block {
        match (l.tokens[0].as_str(), &l.tokens[1..]) {
            ("lameduck", [v]) => {
                lameduck = parse_duration(v)
                    .ok_or_else(|| s.err(d, l.line, format!("unable to parse lameduck duration value: '{v}'")))?;
            }
            ("lameduck", _) => {
                return Err(s.err(d, l.line, "Wrong argument count or unexpected line ending after 'lameduck'"));
            }
            (other, _) => return Err(s.err(d, l.line, format!("unknown property '{other}'"))),
        }
    }
    s.settings.health = Some((addr, lameduck));
    Ok(())
}
