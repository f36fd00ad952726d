//! Property-name escaping (upstream `k8s.io/apiserver/pkg/cel/escaping.go`): a schema property is selectable in CEL
//! as `self.<escaped>`, where CEL reserved words become `__word__` and `__`, `.`, `-`, `/` become `__underscores__`,
//! `__dot__`, `__dash__`, `__slash__`; a name with any other character (or a leading digit) is not selectable.

/// The CEL lexer's RESERVED symbols, which must be escaped to be used as field names.
pub const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// upstream `Escape`: the CEL identifier for a property name, or None when the name cannot be one.
pub fn escape(ident: &str) -> Option<String> {
    let first = ident.bytes().next()?;
    if first.is_ascii_digit() {
        return None;
    }
    if RESERVED.contains(&ident) {
        return Some(format!("__{ident}__"));
    }
    if ident.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !ident.contains("__") {
        return Some(ident.to_string());
    }
    let mut out = String::with_capacity(ident.len() + 8);
    let bytes = ident.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' if bytes.get(i + 1) == Some(&b'_') => {
                out.push_str("__underscores__");
                i += 2;
                continue;
            }
            b'.' => out.push_str("__dot__"),
            b'-' => out.push_str("__dash__"),
            b'/' => out.push_str("__slash__"),
            b if b.is_ascii_alphanumeric() || b == b'_' => out.push(b as char),
            _ => return None,
        }
        i += 1;
    }
    Some(out)
}

/// upstream `Unescape`: the property name behind an escaped identifier (None for an invalid escape sequence).
pub fn unescape(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(start) = rest.find("__") {
        let after = &rest[start + 2..];
        // An escape sequence is `__<non-underscores>__`.
        let Some(end) = after.find("__") else { break };
        let contents = &after[..end];
        if contents.is_empty() || contents.contains('_') {
            out.push_str(&rest[..start + 2]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..start]);
        match contents {
            "underscores" => out.push_str("__"),
            "dot" => out.push('.'),
            "dash" => out.push('-'),
            "slash" => out.push('/'),
            c if RESERVED.contains(&c) => {
                if start != 0 || end + 4 != rest.len() {
                    return None;
                }
                out.push_str(c);
            }
            _ => return None,
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_upstream() {
        // upstream escaping_test.go TestEscaping.
        for (unescaped, escaped) in [
            ("", None),
            ("1", None),
            ("a", Some("a")),
            ("a1", Some("a1")),
            ("_a", Some("_a")),
            ("a_b", Some("a_b")),
            ("__", Some("__underscores__")),
            ("a__b", Some("a__underscores__b")),
            ("true", Some("__true__")),
            ("namespace", Some("__namespace__")),
            ("while", Some("__while__")),
            ("int", Some("int")),
            ("self", Some("self")),
            ("a.b", Some("a__dot__b")),
            ("a-b", Some("a__dash__b")),
            ("a/b", Some("a__slash__b")),
            ("dash-dash", Some("dash__dash__dash")),
            ("doubleunderscore__doubleunderscore", Some("doubleunderscore__underscores__doubleunderscore")),
            ("a@b", None),
            ("k!", None),
            ("👑", None),
        ] {
            assert_eq!(escape(unescaped).as_deref(), escaped, "{unescaped:?}");
            if let Some(e) = escaped {
                assert_eq!(unescape(e).as_deref(), Some(unescaped), "{e:?}");
            }
        }
        assert_eq!(unescape("__illegal__"), None);
    }
}
