//! The Corefile (CoreDNS's configuration, Caddyfile syntax): server blocks keyed by `[dns://]ZONE[:PORT]`, each a
//! list of plugin directives with their arguments and optional `{ ... }` blocks; `#` comments, quoted tokens and
//! `{$ENV}` substitution. Parsing only checks the shape; each plugin's setup checks its own arguments.

use std::fmt;

/// A configuration error, worded as CoreDNS's (`Corefile:3 - Error during parsing: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} - Error during parsing: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// One line of tokens inside a directive's block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub tokens: Vec<String>,
    pub line: usize,
}

/// A plugin directive: `name args... [{ lines }]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub block: Vec<Line>,
    pub line: usize,
}

/// A zone and port a server block serves (one of its keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZoneAddr {
    /// Lower case, fully qualified (`.`, `cluster.local.`, `10.in-addr.arpa.`).
    pub zone: String,
    pub port: u16,
}

impl fmt::Display for ZoneAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dns://{}:{}", self.zone, self.port)
    }
}

/// A server block: its keys and directives in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBlock {
    pub keys: Vec<ZoneAddr>,
    pub directives: Vec<Directive>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    line: usize,
    /// A quoted token is never a brace.
    quoted: bool,
}

impl Token {
    fn is(&self, s: &str) -> bool {
        !self.quoted && self.text == s
    }
}

/// Replaces `{$VAR}` and `{%VAR%}` with the environment's values (empty when unset), as Caddy does.
fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let var = if let Some(body) = tail.strip_prefix("{$") {
            body.find('}').map(|end| (&body[..end], end + 3))
        } else if let Some(body) = tail.strip_prefix("{%") {
            body.find("%}").map(|end| (&body[..end], end + 4))
        } else {
            None
        };
        match var {
            Some((name, len)) if !name.is_empty() && !name.contains(char::is_whitespace) => {
                out.push_str(&env(name).unwrap_or_default());
                rest = &tail[len..];
            }
            _ => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn tokenize(text: &str, file: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut cur = String::new();
    let mut cur_line = 1;
    let mut in_quote = false;
    let mut quoted = false;
    let flush = |cur: &mut String, tokens: &mut Vec<Token>, l: usize, quoted: &mut bool| {
        if !cur.is_empty() || *quoted {
            tokens.push(Token { text: std::mem::take(cur), line: l, quoted: *quoted });
        }
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        if in_quote {
            match c {
                '\\' if matches!(chars.peek(), Some('"')) => {
                    cur.push('"');
                    chars.next();
                }
                '"' => in_quote = false,
                '\n' => {
                    line += 1;
                    cur.push(c);
                }
                _ => cur.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                if cur.is_empty() {
                    cur_line = line;
                }
                in_quote = true;
                quoted = true;
            }
            '#' if cur.is_empty() && !quoted => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '\n' => {
                flush(&mut cur, &mut tokens, cur_line, &mut quoted);
                line += 1;
            }
            c if c.is_whitespace() => flush(&mut cur, &mut tokens, cur_line, &mut quoted),
            _ => {
                if cur.is_empty() && !quoted {
                    cur_line = line;
                }
                cur.push(c);
            }
        }
    }
    if in_quote {
        return Err(ParseError { file: file.into(), line, message: "Unexpected EOF: unterminated quote".into() });
    }
    flush(&mut cur, &mut tokens, cur_line, &mut quoted);
    Ok(tokens)
}

/// Normalizes a server block key (`.:53`, `dns://cluster.local`, `10.0.0.0/8:53`) into zones and a port. A CIDR
/// on octet (IPv4) or nibble (IPv6) boundaries becomes its reverse zone.
pub fn parse_key(key: &str, default_port: u16) -> Result<Vec<ZoneAddr>, String> {
    let mut k = key.trim().to_ascii_lowercase();
    for scheme in ["dns://", "tls://", "grpc://", "https://", "quic://"] {
        if let Some(rest) = k.strip_prefix(scheme) {
            if scheme != "dns://" {
                return Err(format!("unsupported transport in '{key}': only dns:// is served"));
            }
            k = rest.to_string();
        }
    }
    let (host, port) = match k.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            let port = p.parse::<u16>().map_err(|_| format!("invalid port in '{key}'"))?;
            (h.trim_start_matches('[').trim_end_matches(']').to_string(), port)
        }
        _ => (k.clone(), default_port),
    };
    let zones = if host.contains('/') {
        reverse_zones(&host).ok_or_else(|| format!("invalid CIDR '{host}'"))?
    } else {
        let mut z = if host.is_empty() { ".".to_string() } else { host };
        if !z.ends_with('.') {
            z.push('.');
        }
        vec![z]
    };
    Ok(zones.into_iter().map(|zone| ZoneAddr { zone, port }).collect())
}

/// The reverse zones of a CIDR (`10.0.0.0/8` -> `10.in-addr.arpa.`); a prefix not on an octet boundary gets one
/// zone per covered octet value, as CoreDNS's `plugin.SplitHostPort`.
pub fn reverse_zones(cidr: &str) -> Option<Vec<String>> {
    let (ip, bits) = cidr.split_once('/')?;
    let bits: u32 = bits.parse().ok()?;
    match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) if bits <= 32 => {
            let o = v4.octets();
            let full = (bits / 8) as usize;
            let rem = bits % 8;
            let base: Vec<String> = o[..full].iter().rev().map(|b| b.to_string()).collect();
            let suffix = |mut parts: Vec<String>| {
                parts.push("in-addr.arpa.".into());
                parts.join(".")
            };
            if rem == 0 {
                return Some(vec![suffix(base)]);
            }
            let mask = 0xffu8 << (8 - rem);
            let start = o[full] & mask;
            let count = 1u16 << (8 - rem);
            Some(
                (0..count)
                    .map(|i| {
                        let mut parts = vec![(start as u16 + i).to_string()];
                        parts.extend(base.iter().cloned());
                        suffix(parts)
                    })
                    .collect(),
            )
        }
        std::net::IpAddr::V6(v6) if bits <= 128 && bits.is_multiple_of(4) => {
            let nibbles: Vec<String> =
                v6.octets().iter().flat_map(|b| [b >> 4, b & 0xf]).map(|n| format!("{n:x}")).collect();
            let mut parts: Vec<String> = nibbles[..(bits / 4) as usize].iter().rev().cloned().collect();
            parts.push("ip6.arpa.".into());
            Some(vec![parts.join(".")])
        }
        _ => None,
    }
}

/// Parses a Corefile. `file` names it in errors; `default_port` is for keys without one (`-dns.port`).
pub fn parse(text: &str, file: &str, default_port: u16) -> Result<Vec<ServerBlock>, ParseError> {
    parse_with_env(text, file, default_port, &|k| std::env::var(k).ok())
}

/// [`parse`] with an explicit environment for `{$VAR}`.
pub fn parse_with_env(
    text: &str,
    file: &str,
    default_port: u16,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ServerBlock>, ParseError> {
    let text = expand_env(text, env);
    let tokens = tokenize(&text, file)?;
    let err = |line: usize, message: String| ParseError { file: file.to_string(), line, message };
    let mut blocks = Vec::new();
    let mut i = 0;
    let mut seen: Vec<ZoneAddr> = Vec::new();
    while i < tokens.len() {
        // Keys up to the opening brace (commas separate them, and a trailing comma continues the line).
        let start = i;
        let mut keys = Vec::new();
        while i < tokens.len() && !tokens[i].is("{") {
            if tokens[i].is("}") {
                return Err(err(tokens[i].line, "Unexpected '}' because no matching opening brace".into()));
            }
            let same_line = i == start || tokens[i].line == tokens[i - 1].line || tokens[i - 1].text.ends_with(',');
            if !same_line {
                break;
            }
            for k in tokens[i].text.split(',').filter(|k| !k.is_empty()) {
                keys.push((k.to_string(), tokens[i].line));
            }
            i += 1;
        }
        let line = tokens[start].line;
        let braced = i < tokens.len() && tokens[i].is("{");
        if !braced && !blocks.is_empty() {
            return Err(err(line, format!("Unexpected token '{}', expecting '{{'", tokens[start].text)));
        }
        let mut zone_addrs = Vec::new();
        for (k, l) in &keys {
            for za in parse_key(k, default_port).map_err(|m| err(*l, m))? {
                if seen.contains(&za) || zone_addrs.contains(&za) {
                    return Err(err(*l, format!("cannot serve {za} - it is already defined")));
                }
                zone_addrs.push(za);
            }
        }
        seen.extend(zone_addrs.iter().cloned());
        // The body: up to the matching brace, or the end of the file for a single unbraced block.
        let end = if braced {
            i += 1;
            let mut depth = 1;
            let mut j = i;
            while j < tokens.len() {
                if tokens[j].is("{") {
                    depth += 1;
                } else if tokens[j].is("}") {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                j += 1;
            }
            if j == tokens.len() {
                return Err(err(tokens[tokens.len() - 1].line, "Unexpected EOF: missing closing brace '}'".into()));
            }
            j
        } else {
            tokens.len()
        };
        let directives = parse_body(&tokens[i..end], &err)?;
        blocks.push(ServerBlock { keys: zone_addrs, directives, line });
        i = if braced { end + 1 } else { end };
    }
    Ok(blocks)
}

fn parse_body(tokens: &[Token], err: &dyn Fn(usize, String) -> ParseError) -> Result<Vec<Directive>, ParseError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if t.is("{") || t.is("}") {
            return Err(err(t.line, format!("Unexpected '{}'", t.text)));
        }
        let mut d = Directive { name: t.text.to_ascii_lowercase(), args: Vec::new(), block: Vec::new(), line: t.line };
        i += 1;
        while i < tokens.len() && tokens[i].line == d.line && !tokens[i].is("{") {
            if tokens[i].is("}") {
                return Err(err(tokens[i].line, "Unexpected '}'".into()));
            }
            d.args.push(tokens[i].text.clone());
            i += 1;
        }
        if i < tokens.len() && tokens[i].is("{") && tokens[i].line == d.line {
            i += 1;
            loop {
                let Some(t) = tokens.get(i) else {
                    return Err(err(d.line, format!("Unexpected EOF: missing '}}' after '{}'", d.name)));
                };
                if t.is("}") {
                    i += 1;
                    break;
                }
                if t.is("{") {
                    return Err(err(t.line, "Unexpected '{': blocks do not nest here".into()));
                }
                let l = t.line;
                let mut line = Line { tokens: Vec::new(), line: l };
                while i < tokens.len() && tokens[i].line == l && !tokens[i].is("}") {
                    if tokens[i].is("{") {
                        return Err(err(l, "Unexpected '{': blocks do not nest here".into()));
                    }
                    line.tokens.push(tokens[i].text.clone());
                    i += 1;
                }
                d.block.push(line);
            }
        }
        out.push(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBEADM: &str = r#".:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"#;

    #[test]
    fn kubeadm_corefile() {
        let blocks = parse(KUBEADM, "Corefile", 53).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].keys, vec![ZoneAddr { zone: ".".into(), port: 53 }]);
        let names: Vec<&str> = blocks[0].directives.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "errors",
                "health",
                "ready",
                "kubernetes",
                "prometheus",
                "forward",
                "cache",
                "loop",
                "reload",
                "loadbalance"
            ]
        );
        let k = &blocks[0].directives[3];
        assert_eq!(k.args, ["cluster.local", "in-addr.arpa", "ip6.arpa"]);
        assert_eq!(k.block[0].tokens, ["pods", "insecure"]);
        assert_eq!(k.block[1].tokens, ["fallthrough", "in-addr.arpa", "ip6.arpa"]);
        assert_eq!(k.block[2].line, 10);
        assert_eq!(blocks[0].directives[1].block[0].tokens, ["lameduck", "5s"]);
    }

    #[test]
    fn stub_domains_and_keys() {
        let text = "# stub domains\n.:53 {\n  forward . 10.0.0.1\n}\nconsul.local:53 {\n  errors\n  cache 30\n  forward . 10.150.0.1\n}\ndns://example.org, example.net:1053 {\n whoami\n}\n10.0.0.0/8 {\n  log\n}\n";
        let blocks = parse(text, "Corefile", 53).unwrap();
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[1].keys, vec![ZoneAddr { zone: "consul.local.".into(), port: 53 }]);
        assert_eq!(blocks[1].directives[2].args, [".", "10.150.0.1"]);
        assert_eq!(
            blocks[2].keys,
            vec![
                ZoneAddr { zone: "example.org.".into(), port: 53 },
                ZoneAddr { zone: "example.net.".into(), port: 1053 }
            ]
        );
        assert_eq!(blocks[3].keys[0].zone, "10.in-addr.arpa.");
    }

    #[test]
    fn reverse_cidrs() {
        assert_eq!(reverse_zones("10.96.0.0/12").unwrap().len(), 16);
        assert_eq!(reverse_zones("10.96.0.0/12").unwrap()[0], "96.10.in-addr.arpa.");
        assert_eq!(reverse_zones("192.168.1.0/24").unwrap(), ["1.168.192.in-addr.arpa."]);
        assert_eq!(reverse_zones("fd00::/16").unwrap(), ["0.0.d.f.ip6.arpa."]);
    }

    #[test]
    fn quotes_comments_env() {
        let env = |k: &str| (k == "UPSTREAM").then(|| "127.0.0.1:5300".to_string());
        let text = ". {\n  hosts {\n    10.0.0.1 \"a b\" # trailing\n  }\n  forward . {$UPSTREAM}\n}";
        let b = parse_with_env(text, "Corefile", 53, &env).unwrap();
        assert_eq!(b[0].directives[0].block[0].tokens, ["10.0.0.1", "a b"]);
        assert_eq!(b[0].directives[1].args, [".", "127.0.0.1:5300"]);
    }

    #[test]
    fn unbraced_single_block() {
        let b = parse("example.org\nlog\nerrors\n", "Corefile", 53).unwrap();
        assert_eq!(b[0].keys[0].zone, "example.org.");
        assert_eq!(b[0].directives.len(), 2);
    }

    #[test]
    fn errors() {
        let e = parse(".:53 {\n  errors\n", "Corefile", 53).unwrap_err();
        assert!(e.to_string().starts_with("Corefile:2 - Error during parsing: Unexpected EOF"), "{e}");
        let e = parse(".:53 {\n}\n.:53 {\n}\n", "Corefile", 53).unwrap_err();
        assert_eq!(e.to_string(), "Corefile:3 - Error during parsing: cannot serve dns://.:53 - it is already defined");
        let e = parse(".:53 {\n kubernetes {\n pods { x }\n }\n}\n", "Corefile", 53).unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse(". {\n}\n}\n", "Corefile", 53).unwrap_err();
        assert!(e.message.contains("Unexpected '}'"), "{e}");
        let e = parse(".:99999 {\n}\n", "Corefile", 53).unwrap_err();
        assert!(e.message.contains("invalid port"), "{e}");
        let e = parse(". {\n hosts \"unterminated\n}\n", "Corefile", 53).unwrap_err();
        assert!(e.message.contains("unterminated"), "{e}");
    }
}
