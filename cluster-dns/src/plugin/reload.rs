//! The `reload` plugin: picks up configuration changes while serving. With `-conf FILE` the file is read again
//! every interval (plus up to `jitter`) and applied when its content changed; with the ConfigMap source every
//! change the watch delivers is applied at once. A configuration that fails is logged and the running one stays.

use std::time::Duration;

use super::{Setup, parse_duration};
use crate::corefile::Directive;

/// CoreDNS's defaults.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_JITTER: Duration = Duration::from_secs(15);

/// `reload [INTERVAL] [JITTER]`.
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<(), String> {
    if d.args.len() > 2 || !d.block.is_empty() {
        return Err(s.err(d, d.line, "Wrong argument count or unexpected line ending after 'reload'"));
    }
    let parse = |v: &String| parse_duration(v).ok_or_else(|| s.err(d, d.line, format!("invalid duration '{v}'")));
    let interval = d.args.first().map(parse).transpose()?.unwrap_or(DEFAULT_INTERVAL);
    let jitter = d.args.get(1).map(parse).transpose()?.unwrap_or(DEFAULT_JITTER);
    if interval < Duration::from_secs(2) {
        return Err(s.err(d, d.line, format!("interval value must be greater or equal to 2s: {interval:?}")));
    }
    if jitter < Duration::from_secs(1) {
        return Err(s.err(d, d.line, format!("jitter value must be greater or equal to 1s: {jitter:?}")));
    }
    if jitter > interval / 2 {
        return Err(s.err(d, d.line, "jitter value must be smaller than half of interval"));
    }
    s.settings.reload = Some((interval, jitter));
    Ok(())
}
