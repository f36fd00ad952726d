//! String formats of CRD schemas (kube-openapi `validation/strfmt`'s default registry, with the format list of
//! apiextensions' `validation/formats.go` for 1.33): which formats a schema keeps and what each accepts. Names are
//! normalized as go-openapi does (dashes removed: `date-time` is `datetime`).

use regex::Regex;
use std::net::Ipv6Addr;
use std::sync::LazyLock;

/// Formats CRD string schemas keep (apiextensions' supportedVersionedFormats at 1.33), normalized.
const SUPPORTED: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "quantity",
];

pub fn normalize(format: &str) -> String {
    format.replace('-', "")
}

/// upstream `StripUnsupportedFormatsPostProcess`: the format a node keeps for its (single) type, or "".
pub fn strip_unsupported(format: &str, types: &[String]) -> String {
    if format.is_empty() {
        return String::new();
    }
    let ty = if types.len() == 1 { types[0].as_str() } else { "" };
    let keep = match ty {
        "" | "string" => SUPPORTED.contains(&normalize(format).as_str()),
        "integer" => format == "int32" || format == "int64",
        "number" => format == "float" || format == "double",
        _ => false,
    };
    if keep { format.to_string() } else { String::new() }
}

/// Whether the strfmt registry knows the format (it validates strings of it).
pub fn known(format: &str) -> bool {
    let n = normalize(format);
    n != "quantity" && SUPPORTED.contains(&n.as_str())
}

/// Whether `data` is valid for a known format.
pub fn validates(format: &str, data: &str) -> bool {
    match normalize(format).as_str() {
        "uri" => is_request_uri(data),
        "email" => is_email(data),
        "hostname" => is_hostname(data),
        "ipv4" => parse_ip_sloppy(data).is_some() && data.contains('.'),
        "ipv6" => data.parse::<Ipv6Addr>().is_ok() && data.contains(':'),
        "cidr" => is_cidr(data),
        "mac" => is_mac(data),
        "uuid" => re(&UUID, data),
        "uuid3" => re(&UUID3, data),
        "uuid4" => re(&UUID4, data),
        "uuid5" => re(&UUID5, data),
        "isbn" => is_isbn10(data) || is_isbn13(data),
        "isbn10" => is_isbn10(data),
        "isbn13" => is_isbn13(data),
        "creditcard" => is_credit_card(data),
        "ssn" => data.len() == 11 && re(&SSN, data),
        "hexcolor" => re(&HEXCOLOR, data),
        "rgbcolor" => re(&RGBCOLOR, data),
        "byte" => re(&BASE64, data),
        "password" => true,
        "date" => is_date(data),
        "datetime" => is_date_time(data),
        "duration" => is_duration(data),
        "bsonobjectid" => data.len() == 24 && data.bytes().all(|b| b.is_ascii_hexdigit()),
        _ => false,
    }
}

fn re(r: &LazyLock<Regex>, s: &str) -> bool {
    r.is_match(s)
}

macro_rules! regex {
    ($name:ident, $re:expr) => {
        static $name: LazyLock<Regex> = LazyLock::new(|| Regex::new($re).expect("static regex"));
    };
}

regex!(
    HOSTNAME,
    r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$"
);
regex!(UUID, r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$");
regex!(UUID3, r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$");
regex!(UUID4, r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$");
regex!(UUID5, r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$");
regex!(SSN, r"^\d{3}[- ]?\d{2}[- ]?\d{4}$");
regex!(HEXCOLOR, r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$");
regex!(
    RGBCOLOR,
    r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$"
);
regex!(BASE64, r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$");
regex!(
    CREDITCARD,
    r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})$"
);
regex!(DATETIME_TIME, r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$");
regex!(DURATION_PART, r"((\d+)\s*([A-Za-zµ]+))");

/// Go's `url.ParseRequestURI` succeeding: an absolute URI or an absolute path.
fn is_request_uri(s: &str) -> bool {
    if s.is_empty() || s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return false;
    }
    if s == "*" {
        return true;
    }
    // scheme: a letter, then letters, digits, '+', '-', '.', up to ':'.
    let mut scheme = "";
    let mut rest = s;
    for (i, c) in s.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return false,
            ':' => {
                scheme = &s[..i];
                rest = &s[i + 1..];
                break;
            }
            _ => break,
        }
    }
    let rest = rest.split_once('?').map(|(a, _)| a).unwrap_or(rest);
    if !rest.starts_with('/') {
        return !scheme.is_empty();
    }
    let path = if !scheme.is_empty() && rest.starts_with("//") {
        let after = &rest[2..];
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        let host = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
        if !valid_host(host) {
            return false;
        }
        path
    } else {
        rest
    };
    valid_escapes(path)
}

fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn valid_host(host: &str) -> bool {
    let (name, port) = if let Some(h) = host.strip_prefix('[') {
        let Some(end) = h.find(']') else { return false };
        (&h[..end], &h[end + 1..])
    } else {
        match host.rfind(':') {
            Some(i) => (&host[..i], &host[i..]),
            None => (host, ""),
        }
    };
    let port_ok = port.is_empty() || (port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return false;
    }
    name.bytes().all(|b| b >= 0x80 || b.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"%".contains(&b))
        && valid_escapes(name)
}

/// net/mail's `ParseAddress` for the common forms: `a@b.c` and `Name <a@b.c>`.
fn is_email(s: &str) -> bool {
    let s = s.trim();
    let addr = match (s.rfind('<'), s.ends_with('>')) {
        (Some(i), true) => &s[i + 1..s.len() - 1],
        (None, false) => s,
        _ => return false,
    };
    let Some((local, domain)) = addr.rsplit_once('@') else { return false };
    let atext = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = |p: &str| !p.is_empty() && p.split('.').all(|a| !a.is_empty() && a.chars().all(atext));
    let local_ok = dot_atom(local) || (local.len() >= 2 && local.starts_with('"') && local.ends_with('"'));
    let domain_ok = dot_atom(domain) || (domain.starts_with('[') && domain.ends_with(']'));
    local_ok && domain_ok
}

fn is_hostname(s: &str) -> bool {
    HOSTNAME.is_match(s) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63)
}

/// k8s.io/utils/net `ParseIPSloppy`: IPv4 with leading zeros allowed, or IPv6.
fn parse_ip_sloppy(s: &str) -> Option<()> {
    if s.contains(':') {
        return s.parse::<Ipv6Addr>().ok().map(|_| ());
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    for p in parts {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.trim_start_matches('0').len() > 3 {
            return None;
        }
        if p.parse::<u32>().ok()? > 255 {
            return None;
        }
    }
    Some(())
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, mask)) = s.split_once('/') else { return false };
    let bits = if ip.contains(':') { 128 } else { 32 };
    if parse_ip_sloppy(ip).is_none() || mask.is_empty() || !mask.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    mask.parse::<u32>().is_ok_and(|m| m <= bits)
}

/// net.ParseMAC: 6, 8 or 20 octets as `xx:xx…`/`xx-xx…`, or groups of four hex digits separated by dots.
fn is_mac(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    if s.len() < 14 {
        return false;
    }
    let b = s.as_bytes();
    if b[2] == b':' || b[2] == b'-' {
        let sep = b[2] as char;
        let parts: Vec<&str> = s.split(sep).collect();
        matches!(parts.len(), 6 | 8 | 20) && parts.iter().all(|p| hex(p, 2))
    } else if b[4] == b'.' {
        let parts: Vec<&str> = s.split('.').collect();
        matches!(parts.len(), 3 | 4 | 10) && parts.iter().all(|p| hex(p, 4))
    } else {
        false
    }
}

fn sanitize_isbn(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace() && *c != '-').collect()
}

fn is_isbn10(s: &str) -> bool {
    let s = sanitize_isbn(s);
    let b = s.as_bytes();
    if b.len() != 10 || !b[..9].iter().all(u8::is_ascii_digit) || !(b[9].is_ascii_digit() || b[9] == b'X') {
        return false;
    }
    let mut sum: u32 = (0..9).map(|i| (i as u32 + 1) * (b[i] - b'0') as u32).sum();
    sum += 10 * if b[9] == b'X' { 10 } else { (b[9] - b'0') as u32 };
    sum.is_multiple_of(11)
}

fn is_isbn13(s: &str) -> bool {
    let s = sanitize_isbn(s);
    let b = s.as_bytes();
    if b.len() != 13 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: i32 = (0..12).map(|i| if i % 2 == 0 { 1 } else { 3 } * (b[i] - b'0') as i32).sum();
    (b[12] - b'0') as i32 - ((10 - sum % 10) % 10) == 0
}

fn is_credit_card(s: &str) -> bool {
    let s = sanitize_isbn(s);
    if !CREDITCARD.is_match(&s) {
        return false;
    }
    let mut sum = 0;
    let mut double = false;
    for c in s.bytes().rev() {
        let mut d = (c - b'0') as u32;
        if double {
            d *= 2;
            sum += if d >= 10 { d % 10 + 1 } else { d };
        } else {
            sum += d;
        }
        double = !double;
    }
    sum.is_multiple_of(10)
}

/// Go's `time.Parse("2006-01-02", s)`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| {
        let part = &s[r];
        if part.bytes().all(|c| c.is_ascii_digit()) { part.parse::<i32>().ok() } else { None }
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else { return false };
    if !(1..=12).contains(&m) || d < 1 {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(m - 1) as usize];
    d <= days
}

/// strfmt `IsDateTime`: a full date, `t`, and a time with seconds and a zone.
fn is_date_time(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !is_date(parts[0]) {
        return false;
    }
    let Some(m) = DATETIME_TIME.captures(parts[1]) else { return false };
    &m[1] <= "23" && &m[2] <= "59" && &m[3] <= "59"
}

/// strfmt `ParseDuration`: Go's `time.ParseDuration`, else any `<n> <unit>` with a known (prefix of a) unit name.
fn is_duration(s: &str) -> bool {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let go_units_only = !unsigned.is_empty()
        && unsigned.chars().all(|c| c.is_ascii_digit() || c == '.' || "nsuµμmh".contains(c))
        && api_types::duration::parse(&unsigned.replace('μ', "µ")).is_some();
    if go_units_only {
        return true;
    }
    const UNITS: &[&[&str]] = &[
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    DURATION_PART.captures_iter(s).any(|m| {
        let unit = m[3].trim().to_lowercase();
        m[2].parse::<i64>().is_ok()
            && UNITS.iter().any(|variants| {
                variants
                    .iter()
                    .enumerate()
                    .any(|(i, v)| (i == variants.len() - 1 && unit.starts_with(v)) || v.eq_ignore_ascii_case(&unit))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kube-openapi strfmt's format tests, the cases that decide CR validity.
    #[test]
    fn formats() {
        let ok = |f: &str, v: &str| assert!(validates(f, v), "{f} should accept {v:?}");
        let bad = |f: &str, v: &str| assert!(!validates(f, v), "{f} should refuse {v:?}");
        ok("date", "2014-12-15");
        bad("date", "2014-02-30");
        bad("date", "2014-1-15");
        ok("date-time", "2014-12-15T19:30:20.000Z");
        ok("date-time", "2011-08-18T19:03:37+01:00");
        bad("date-time", "2014-12-15T25:30:20Z");
        bad("date-time", "2014-12-15");
        ok("duration", "3 weeks");
        ok("duration", "1h30m");
        ok("duration", "-5s");
        ok("duration", "22 ns");
        bad("duration", "forever");
        ok("uri", "http://foo.bar/?baz=qux#quux");
        ok("uri", "/relative/path");
        ok("uri", "mailto:someone@example.com");
        bad("uri", "relative");
        bad("uri", "http://a b.com/");
        ok("email", "someone@example.com");
        ok("email", "Some One <someone@example.com>");
        bad("email", "not an email");
        ok("hostname", "www.example.com");
        ok("hostname", "localhost");
        bad("hostname", "-example.com");
        ok("ipv4", "192.168.0.1");
        ok("ipv4", "010.0.0.1");
        bad("ipv4", "256.0.0.1");
        bad("ipv4", "::1");
        ok("ipv6", "::1");
        ok("ipv6", "2001:db8::68");
        bad("ipv6", "192.168.0.1");
        ok("cidr", "192.168.0.0/24");
        ok("cidr", "2001:db8::/32");
        bad("cidr", "192.168.0.0/33");
        bad("cidr", "192.168.0.0");
        ok("mac", "01:23:45:67:89:ab");
        ok("mac", "01-23-45-67-89-AB");
        ok("mac", "0123.4567.89ab");
        bad("mac", "01:23:45:67:89");
        ok("uuid", "a8098c1a-f86e-11da-bd1a-00112444be1e");
        ok("uuid3", "bcd02e22-68f0-3046-a512-327cca9def8f");
        ok("uuid4", "025b0d74-00a2-4048-bf57-227c5111bb34");
        ok("uuid5", "886313e1-3b8a-5372-9b90-0c9aee199e5d");
        bad("uuid4", "a8098c1a-f86e-11da-bd1a-00112444be1e");
        ok("isbn10", "0321751043");
        ok("isbn13", "978-0321751041");
        bad("isbn10", "0321751044");
        ok("creditcard", "4111-1111-1111-1111");
        bad("creditcard", "4111-1111-1111-1112");
        ok("ssn", "111-11-1111");
        bad("ssn", "111111111");
        ok("hexcolor", "#FFFFFF");
        bad("hexcolor", "#FFFFF");
        ok("rgbcolor", "rgb(255,255,255)");
        bad("rgbcolor", "rgb(256,255,255)");
        ok("byte", "ZWxpemFiZXRocG9zZXk=");
        bad("byte", "ZWxpemFiZXRocG9zZXk");
        ok("bsonobjectid", "507f1f77bcf86cd799439011");
        bad("bsonobjectid", "507f1f77bcf86cd79943901");
        ok("password", "anything");
    }

    #[test]
    fn stripping_follows_the_type() {
        let t = |s: &str| vec![s.to_string()];
        assert_eq!(strip_unsupported("date-time", &t("string")), "date-time");
        assert_eq!(strip_unsupported("k8s-short-name", &t("string")), "", "introduced in 1.34");
        assert_eq!(strip_unsupported("int32", &t("integer")), "int32");
        assert_eq!(strip_unsupported("int32", &t("string")), "");
        assert_eq!(strip_unsupported("double", &t("number")), "double");
        assert_eq!(strip_unsupported("uuid", &t("boolean")), "");
        assert_eq!(strip_unsupported("uuid", &["integer".into(), "string".into()]), "uuid");
        assert!(known("date-time") && !known("quantity") && !known("int32"));
    }
}
