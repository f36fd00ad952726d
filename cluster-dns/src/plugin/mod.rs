//! Plugins: the handler chain of a server block (CoreDNS's `plugin.Handler`), in CoreDNS's fixed execution order
//! (`plugin.cfg`), whatever their order in the Corefile. A plugin answers, or passes the request on with
//! [`Next::serve`] and may change the answer on its way back (cache, rewrite, loadbalance).
//!
//! One file per plugin; each has a `setup` that reads its directive and fails with CoreDNS's wording.

pub mod cache;
pub mod errors;
pub mod forward;
pub mod health;
pub mod hosts;
pub mod kubernetes;
pub mod loadbalance;
pub mod log;
pub mod r#loop;
pub mod prometheus;
pub mod ready;
pub mod reload;
pub mod rewrite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};

use crate::corefile::{Directive, ZoneAddr};
use crate::request::Request;

/// A boxed future (plugins are trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a plugin returns: the answer, or an error the server turns into a response with its rcode.
pub type Answer = Result<Message, PluginError>;

/// A plugin's failure: the rcode to answer with (SERVFAIL, REFUSED) and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin/{plugin}: {message}")]
pub struct PluginError {
    pub plugin: &'static str,
    pub rcode: ResponseCode,
    pub message: String,
}

impl PluginError {
    pub fn servfail(plugin: &'static str, message: impl Into<String>) -> Self {
        PluginError { plugin, rcode: ResponseCode::ServFail, message: message.into() }
    }
}

/// One handler of a chain.
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Answer>;

    /// For plugins with a readiness state (CoreDNS's `ready.Readiness`): whether they are ready; None for others.
    fn ready(&self) -> Option<bool> {
        None
    }
}

/// The rest of the chain after a plugin.
#[derive(Clone, Copy)]
pub struct Next<'a>(&'a [Arc<dyn Plugin>]);

impl<'a> Next<'a> {
    pub fn new(chain: &'a [Arc<dyn Plugin>]) -> Self {
        Next(chain)
    }

    /// Runs the next plugin; at the end of the chain, SERVFAIL ("no next plugin found").
    pub fn serve<'b>(self, req: &'b mut Request) -> BoxFuture<'b, Answer>
    where
        'a: 'b,
    {
        match self.0.split_first() {
            Some((p, rest)) => p.serve(req, Next(rest)),
            None => Box::pin(async { Err(PluginError::servfail("plugin", "no next plugin found")) }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The plugins CoreDNS runs, in execution order; only those with a handler here are accepted.
pub const ORDER: &[&str] = &[
    "reload",
    "ready",
    "health",
    "prometheus",
    "errors",
    "log",
    "loadbalance",
    "cache",
    "rewrite",
    "hosts",
    "kubernetes",
    "loop",
    "forward",
];

/// Settings that are not part of a chain: the HTTP endpoints and reloading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerSettings {
    /// `health` address and lameduck duration.
    pub health: Option<(String, std::time::Duration)>,
    /// `ready` address.
    pub ready: Option<String>,
    /// `prometheus` addresses.
    pub metrics: Vec<String>,
    /// `reload` interval and jitter.
    pub reload: Option<(std::time::Duration, std::time::Duration)>,
}

/// What a plugin's setup sees.
pub struct Setup<'a> {
    /// The server block's keys.
    pub keys: &'a [ZoneAddr],
    pub env: &'a crate::server::Env,
    pub settings: &'a mut ServerSettings,
    /// The Corefile's name for errors.
    pub file: &'a str,
}

impl Setup<'_> {
    /// The server block's zones.
    pub fn zones(&self) -> Vec<String> {
        let mut z: Vec<String> = self.keys.iter().map(|k| k.zone.clone()).collect();
        z.dedup();
        z
    }

    /// An error at a directive's line, worded as CoreDNS's setup errors.
    pub fn err(&self, d: &Directive, line: usize, message: impl std::fmt::Display) -> String {
        format!("{}:{} - Error during parsing: plugin/{}: {message}", self.file, line.max(d.line), d.name)
    }
}

/// Builds one directive's handler (None for directives that only configure the server).
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
    match d.name.as_str() {
        "cache" => cache::setup(d, s).map(|p| Some(Arc::new(p) as Arc<dyn Plugin>)),
        "errors" => errors::setup(d, s).map(|p| Some(Arc::new(p) as Arc<dyn Plugin>)),
        "forward" => forward::setup(d, s).map(|p| Some(p as Arc<dyn Plugin>)),
        "health" => health::setup(d, s).map(|_| None),
        "hosts" => hosts::setup(d, s).map(|p| Some(p as Arc<dyn Plugin>)),
        "kubernetes" => kubernetes::setup(d, s).map(|p| Some(Arc::new(p) as Arc<dyn Plugin>)),
        "loadbalance" => loadbalance::setup(d, s).map(|p| Some(Arc::new(p) as Arc<dyn Plugin>)),
        "log" => log::setup(d, s).map(|p| Some(Arc::new(p) as Arc<dyn Plugin>)),
        "loop" => r#loop::setup(d, s).map(|p| Some(Arc::new(p) as Arc<dyn Plugin>)),
        "prometheus" => prometheus::setup(d, s).map(|p| Some(Arc::new(p) as Arc<dyn Plugin>)),
        "ready" => ready::setup(d, s).map(|_| None),
        "reload" => reload::setup(d, s).map(|_| None),
        "rewrite" => rewrite::setup(d, s).map(|p| Some(Arc::new(p) as Arc<dyn Plugin>)),
        other => Err(format!("{}:{} - Error during parsing: Unknown directive '{other}'", s.file, d.line)),
    }
}

/// Parses a Go duration (`5s`, `1m30s`, `500ms`, `2h`).
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(std::time::Duration::ZERO);
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(std::time::Duration::from_secs_f64(total))
}

/// Whether `name` (lower case, fully qualified) is `zone` or below it.
pub fn in_zone(name: &str, zone: &str) -> bool {
    zone == "." || name == zone || (name.ends_with(zone) && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// The longest of `zones` that `name` is in (CoreDNS's `plugin.Zones.Matches`).
pub fn matches<'z>(zones: &'z [String], name: &str) -> Option<&'z str> {
    zones
        .iter()
        .filter(|z| in_zone(name, z))
        .max_by_key(|z| if z.as_str() == "." { 0 } else { z.len() })
        .map(|z| z.as_str())
}

/// A name made fully qualified and lower case.
pub fn fqdn(name: &str) -> String {
    let mut n = name.to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// Normalizes a plugin's zone arguments against its server block (CoreDNS's `plugin.OriginsFromArgsOrServerBlock`):
/// the arguments (CIDRs become reverse zones), or the block's zones when none are given.
pub fn origins(args: &[String], s: &Setup<'_>) -> Vec<String> {
    if args.is_empty() {
        return s.zones();
    }
    let mut out = Vec::new();
    for a in args {
        if a.contains('/')
            && let Some(z) = crate::corefile::reverse_zones(a)
        {
            out.extend(z);
            continue;
        }
        out.push(fqdn(a));
    }
    out
}

/// CoreDNS's `fall.F`: which names fall through to the next plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fallthrough {
    /// None: off; Some(empty): every name; otherwise these zones.
    zones: Option<Vec<String>>,
}

impl Fallthrough {
    pub fn set(&mut self, args: &[String]) {
        self.zones = Some(args.iter().map(|a| fqdn(a)).collect());
    }

    pub fn through(&self, name: &str) -> bool {
        match &self.zones {
            None => false,
            Some(z) if z.is_empty() => true,
            Some(z) => z.iter().any(|zone| in_zone(name, zone)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(std::time::Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Some(std::time::Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(std::time::Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn zones() {
        let z = vec![".".to_string(), "cluster.local.".into(), "local.".into()];
        assert_eq!(matches(&z, "a.svc.cluster.local."), Some("cluster.local."));
        assert_eq!(matches(&z, "example.org."), Some("."));
        assert_eq!(matches(&z, "xcluster.local."), Some("local."));
        assert_eq!(matches(&z[1..], "example.org."), None);
        let mut f = Fallthrough::default();
        assert!(!f.through("a."));
        f.set(&["in-addr.arpa".into()]);
        assert!(f.through("1.0.0.10.in-addr.arpa."));
        assert!(!f.through("x.cluster.local."));
        f.set(&[]);
        assert!(f.through("x.cluster.local."));
    }
}
