//! The `rewrite` plugin's `name` rules: the question's name is rewritten before the rest of the chain sees it
//! (`exact`, `prefix`, `suffix`, `substring`, `regex` with `{1}` groups) and the answer is mapped back: the
//! question is restored and, for `answer auto` (always for exact rules) or `answer name FROM TO`, the record names
//! and values carrying the rewritten name get the client's name again.

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData};
use regex::Regex;

use super::{Answer, BoxFuture, Next, Plugin, Setup, fqdn};
use crate::corefile::Directive;
use crate::request::Request;

#[derive(Debug, Clone)]
enum Match {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Substring(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct Rule {
    stop: bool,
    matcher: Match,
    to: String,
    auto: bool,
    /// `answer name FROM TO`: owner names.
    answer_names: Vec<(Regex, String)>,
    /// `answer value FROM TO`: record values (CNAME, SRV, PTR targets...).
    answer_values: Vec<(Regex, String)>,
}

/// How to map an answer back.
#[derive(Debug, Clone)]
struct Revert {
    /// (rewritten, original) for `auto`.
    auto: Option<(String, String)>,
    /// For suffix rules: (replacement, suffix).
    suffix: Option<(String, String)>,
    names: Vec<(Regex, String)>,
    values: Vec<(Regex, String)>,
}

fn expand(template: &str, caps: &regex::Captures<'_>) -> String {
    let mut s = template.to_string();
    for (i, g) in caps.iter().enumerate() {
        s = s.replace(&format!("{{{i}}}"), g.map(|m| m.as_str()).unwrap_or_default());
    }
    s
}

impl Rule {
    /// The new name when this rule matches `name` (lower case, fully qualified).
    fn apply(&self, name: &str) -> Option<String> {
        match &self.matcher {
            Match::Exact(from) => (name == from).then(|| self.to.clone()),
            Match::Prefix(p) => name.strip_prefix(p.as_str()).map(|rest| format!("{}{rest}", self.to)),
            Match::Suffix(sfx) => name.strip_suffix(sfx.as_str()).map(|rest| format!("{rest}{}", self.to)),
            Match::Substring(sub) => name.contains(sub.as_str()).then(|| name.replace(sub.as_str(), &self.to)),
            Match::Regex(re) => re.captures(name).map(|c| fqdn(&expand(&self.to, &c))),
        }
    }
}

fn map_name(n: &Name, revert: &Revert, rules: &[(Regex, String)]) -> Option<Name> {
    let text = fqdn(&n.to_ascii());
    let mut out = text.clone();
    if let Some((rewritten, original)) = &revert.auto
        && out == *rewritten
    {
        out = original.clone();
    }
    if let Some((replacement, suffix)) = &revert.suffix
        && let Some(rest) = out.strip_suffix(replacement.as_str())
    {
        out = format!("{rest}{suffix}");
    }
    for (re, to) in rules {
        if let Some(c) = re.captures(&out) {
            out = fqdn(&expand(to, &c));
        }
    }
    if out == text { None } else { Name::from_ascii(&out).ok() }
}

fn revert_answer(m: &mut Message, revert: &Revert) {
    for r in m.answers.iter_mut().chain(m.authorities.iter_mut()).chain(m.additionals.iter_mut()) {
        if let Some(n) = map_name(&r.name, revert, &revert.names) {
            r.name = n;
        }
        let value = match &mut r.data {
            RData::CNAME(c) => Some(&mut c.0),
            RData::PTR(p) => Some(&mut p.0),
            RData::NS(n) => Some(&mut n.0),
            RData::SRV(srv) => Some(&mut srv.target),
            _ => None,
        };
        if let Some(v) = value
            && let Some(n) = map_name(v, revert, &revert.values)
        {
            *v = n;
        }
    }
}

pub struct Rewrite {
    rules: Vec<Rule>,
}

impl Plugin for Rewrite {
    fn name(&self) -> &'static str {
        "rewrite"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let original_query = req.msg.queries.clone();
            let original_name = req.name();
            let mut reverts = Vec::new();
            for rule in &self.rules {
                let current = req.name();
                let Some(new) = rule.apply(&current) else { continue };
                let Ok(n) = Name::from_ascii(&new) else { continue };
                req.msg.queries[0].name = n;
                let suffix = match &rule.matcher {
                    Match::Suffix(s) if rule.auto => Some((rule.to.clone(), s.clone())),
                    _ => None,
                };
                let auto_pair =
                    matches!(rule.matcher, Match::Exact(_)) || rule.auto && !matches!(rule.matcher, Match::Suffix(_));
                reverts.push(Revert {
                    auto: auto_pair.then(|| (new.clone(), current.clone())),
                    suffix,
                    names: rule.answer_names.clone(),
                    values: rule.answer_values.clone(),
                });
                if rule.stop {
                    break;
                }
            }
            if reverts.is_empty() {
                return next.serve(req).await;
            }
            tracing::debug!("plugin/rewrite: {original_name} -> {}", req.name());
            let answer = next.serve(&mut *req).await;
            req.msg.queries = original_query.clone();
            let mut m = answer?;
            for r in reverts.iter().rev() {
                revert_answer(&mut m, r);
            }
            m.queries = original_query;
            Ok(m)
        })
    }
}

/// `answer auto`, then the `answer name` and `answer value` rules.
type AnswerRules = (bool, Vec<(Regex, String)>, Vec<(Regex, String)>);

fn parse_answer_rules(args: &[String]) -> Result<AnswerRules, String> {
    let (mut auto, mut names, mut values) = (false, Vec::new(), Vec::new());
    let mut i = 0;
    while i < args.len() {
        if args[i] != "answer" {
            return Err("exceeded the number of arguments for a non-answer rule argument".into());
        }
        i += 1;
        match args.get(i).map(String::as_str) {
            Some("auto") => {
                auto = true;
                i += 1;
            }
            Some(kind @ ("name" | "value")) => {
                let (Some(from), Some(to)) = (args.get(i + 1), args.get(i + 2)) else {
                    return Err(format!("{kind} answer rule: 2 arguments required"));
                };
                let re =
                    Regex::new(from).map_err(|e| format!("invalid regex pattern in an answer rule: {from}: {e}"))?;
                if kind == "name" { &mut names } else { &mut values }.push((re, fqdn(to)));
                i += 3;
            }
            _ => return Err("type missing for answer rule".into()),
        }
    }
    Ok((auto, names, values))
}

/// One `rewrite [continue|stop] name [exact|prefix|suffix|substring|regex] FROM TO [answer ...]` line.
pub fn parse_rule(args: &[String]) -> Result<Rule, String> {
    let mut args = args;
    let mut stop = true;
    if let Some(a) = args.first()
        && (a == "continue" || a == "stop")
    {
        stop = a == "stop";
        args = &args[1..];
    }
    match args.first().map(String::as_str) {
        Some("name") => args = &args[1..],
        Some(other) => return Err(format!("invalid rule type \"{other}\": only name rules are supported")),
        None => return Err("too few arguments for a name rule".into()),
    }
    if args.len() < 2 {
        return Err("too few arguments for a name rule".into());
    }
    let kinds = ["exact", "prefix", "suffix", "substring", "regex"];
    let (kind, from, to, rest) = if args.len() == 2 || !kinds.contains(&args[0].to_ascii_lowercase().as_str()) {
        if args.len() > 2 && args[2] != "answer" {
            return Err(format!(
                "name rule supports only exact, prefix, suffix, substring, and regex name matching, received: {}",
                args[0]
            ));
        }
        ("exact".to_string(), args[0].clone(), args[1].clone(), &args[2..])
    } else {
        if args.len() < 3 {
            return Err("too few arguments for a name rule".into());
        }
        (args[0].to_ascii_lowercase(), args[1].clone(), args[2].clone(), &args[3..])
    };
    let (auto, answer_names, answer_values) = parse_answer_rules(rest)?;
    let lower = |s: &str| s.to_ascii_lowercase();
    let matcher = match kind.as_str() {
        "exact" => Match::Exact(fqdn(&from)),
        "prefix" => Match::Prefix(lower(&from)),
        "suffix" => Match::Suffix(fqdn(&from)),
        "substring" => Match::Substring(lower(&from)),
        _ => Match::Regex(Regex::new(&from).map_err(|e| format!("invalid regex pattern in a name rule: {from}: {e}"))?),
    };
    let to = match kind.as_str() {
        "exact" | "suffix" => fqdn(&to),
        _ => lower(&to),
    };
    Ok(Rule { stop, matcher, to, auto, answer_names, answer_values })
}

/// `rewrite ...` (several lines make several rules, in order).
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<Rewrite, String> {
    let mut rules = Vec::new();
    if d.block.is_empty() {
        rules.push(parse_rule(&d.args).map_err(|e| s.err(d, d.line, e))?);
    } else {
        for l in &d.block {
            let mut args = d.args.clone();
            args.extend(l.tokens.iter().cloned());
            rules.push(parse_rule(&args).map_err(|e| s.err(d, l.line, e))?);
        }
    }
    Ok(Rewrite { rules })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn rules_match_as_coredns() {
        let r = parse_rule(&v("name foo.example.com bar.default.svc.cluster.local")).unwrap();
        assert_eq!(r.apply("foo.example.com.").as_deref(), Some("bar.default.svc.cluster.local."));
        assert_eq!(r.apply("xfoo.example.com."), None);
        let r = parse_rule(&v("name prefix api. web.")).unwrap();
        assert_eq!(r.apply("api.default.svc.cluster.local.").as_deref(), Some("web.default.svc.cluster.local."));
        let r = parse_rule(&v("name suffix .corp.local .svc.cluster.local answer auto")).unwrap();
        assert_eq!(r.apply("web.default.corp.local.").as_deref(), Some("web.default.svc.cluster.local."));
        let r = parse_rule(&v("name substring corp svc")).unwrap();
        assert_eq!(r.apply("a.corp.x.").as_deref(), Some("a.svc.x."));
        let r =
            parse_rule(&v(r"name regex (.*)\.db\.example\.$ {1}.default.svc.cluster.local answer name (.*)\.default\.svc\.cluster\.local\.$ {1}.db.example"))
                .unwrap();
        assert_eq!(r.apply("pg.db.example.").as_deref(), Some("pg.default.svc.cluster.local."));
        assert_eq!(r.answer_names.len(), 1);
        assert!(parse_rule(&v("continue name a b")).is_ok_and(|r| !r.stop));
        assert!(parse_rule(&v("ttl a 5")).unwrap_err().contains("only name rules"));
        assert!(parse_rule(&v("name regex ( b")).unwrap_err().contains("invalid regex"));
        assert!(parse_rule(&v("name a")).is_err());
    }
}
