//! Dependent variable expansion: `$(VAR)` references in `env[].value`, `command`, `args` and `subPathExpr`, with
//! upstream's rules (its `third_party/forked/golang/expansion`): `$$` is an escaped `$`, a reference to an unknown
//! variable stays as written, an unterminated `$(` and a `$` followed by anything else are copied through.

/// Expands the `$(NAME)` references in `input`, asking `mapping` for each name's value.
pub fn expand(input: &str, mut mapping: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        // A `$` ending the input is kept as it is.
        let Some(next) = after.chars().next() else {
            out.push('$');
            rest = after;
            break;
        };
        match next {
            // `$$`: an escaped operator.
            '$' => {
                out.push('$');
                rest = &after[1..];
            }
            '(' => match after[1..].find(')') {
                Some(close) => {
                    out.push_str(&mapping(&after[1..1 + close]));
                    rest = &after[close + 2..];
                }
                // No closing parenthesis: `$(` is copied and the scan goes on after it.
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            // A `$` that starts no expression: copied with the character after it.
            c => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A source of variables: the value of a name, if it has one.
pub type Context<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Upstream's `MappingFuncFor`: the first context that has the name gives its value; an unknown name expands to
/// the reference itself, `$(NAME)`.
pub fn lookup<'a>(contexts: &'a [Context<'a>]) -> impl FnMut(&str) -> String + 'a {
    move |name: &str| contexts.iter().find_map(|c| c(name)).unwrap_or_else(|| format!("$({name})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(map: &HashMap<&str, &str>) -> impl Fn(&str) -> Option<String> {
        move |k: &str| map.get(k).map(|v| v.to_string())
    }

    /// Upstream's `doExpansionTest` cases, run against one context and against the same variables split in two.
    fn check(contexts: &[Context<'_>]) {
        let cases = [
            ("whole string", "$(VAR_A)", "A"),
            ("repeat", "$(VAR_A)-$(VAR_A)", "A-A"),
            ("beginning", "$(VAR_A)-1", "A-1"),
            ("middle", "___$(VAR_B)___", "___B___"),
            ("end", "___$(VAR_C)", "___C"),
            ("compound", "$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("escape & expand", "$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            ("compound escape", "$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
            ("mixed in escapes", "f000-$$VAR_A", "f000-$VAR_A"),
            ("backslash escape ignored", "foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("backslash escape ignored", "foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("lots of backslashes", "foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
            ("nested var references", "$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
            ("nested var references second type", "$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("value is a reference", "$(VAR_REF)", "$(VAR_A)"),
            ("value is a reference x 2", "%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
            ("empty var", "foo$(VAR_EMPTY)bar", "foobar"),
            ("unterminated expression", "foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
            ("expression without operator", "f00__(VAR_A)__", "f00__(VAR_A)__"),
            ("shell special vars pass through", "$?_boo_$!", "$?_boo_$!"),
            ("bare operators are ignored", "$VAR_A", "$VAR_A"),
            ("undefined vars are passed through", "$(VAR_DNE)", "$(VAR_DNE)"),
            ("multiple (even) operators, var undefined", "$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
            ("multiple (even) operators, var defined", "$$$$$$(VAR_A)", "$$$(VAR_A)"),
            ("multiple (odd) operators, var undefined", "$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
            ("multiple (odd) operators, var defined", "$$$$$$$(VAR_A)", "$$$A"),
            ("missing open expression", "$VAR_A)", "$VAR_A)"),
            ("shell syntax ignored", "${VAR_A}", "${VAR_A}"),
            ("trailing incomplete expression not consumed", "$(VAR_B)_______$(A", "B_______$(A"),
            ("trailing incomplete expression, no content, is not consumed", "$(VAR_C)_______$(", "C_______$("),
            ("operator at end of input string is preserved", "$(VAR_A)foobarzab$", "Afoobarzab$"),
            ("shell escaped incomplete expr", "foo-\\$(VAR_A", "foo-\\$(VAR_A"),
            ("lots of $( in middle", "--$($($($($--", "--$($($($($--"),
            ("lots of $( in beginning", "$($($($($--foo$(", "$($($($($--foo$("),
            ("lots of $( at end", "foo0--$($($($(", "foo0--$($($($("),
            ("escaped operators in variable names are not escaped", "$(foo$$var)", "$(foo$$var)"),
            ("newline not expanded", "\n", "\n"),
            // Ours: a `$` before a multi-byte character keeps the whole character (upstream decodes a rune).
            ("operator before a multi-byte character", "$é$(VAR_A)ü$", "$éAü$"),
            ("multi-byte characters in names", "$(VAR_Ä)", "$(VAR_Ä)"),
        ];
        for (name, input, expected) in cases {
            assert_eq!(expand(input, lookup(contexts)), expected, "{name}: {input:?}");
        }
    }

    #[test]
    fn expansion_as_upstream_with_one_context() {
        let ctx =
            HashMap::from([("VAR_A", "A"), ("VAR_B", "B"), ("VAR_C", "C"), ("VAR_REF", "$(VAR_A)"), ("VAR_EMPTY", "")]);
        check(&[&from(&ctx)]);
    }

    #[test]
    fn expansion_as_upstream_with_two_contexts() {
        let first = HashMap::from([("VAR_A", "A"), ("VAR_EMPTY", "")]);
        let second = HashMap::from([("VAR_B", "B"), ("VAR_C", "C"), ("VAR_REF", "$(VAR_A)")]);
        check(&[&from(&first), &from(&second)]);
    }

    /// Upstream's TestMapReference: each variable expands from those declared before it.
    #[test]
    fn later_variables_expand_from_earlier_ones() {
        let envs = [("FOO", "bar"), ("ZOO", "$(FOO)-1"), ("BLU", "$(ZOO)-2")];
        let mut declared: HashMap<String, String> = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for (name, value) in envs {
            let expanded = {
                let get = |k: &str| declared.get(k).cloned();
                expand(value, lookup(&[&get]))
            };
            declared.insert(name.into(), expanded);
        }
        let want: HashMap<String, String> = [("FOO", "bar"), ("ZOO", "bar-1"), ("BLU", "bar-1-2")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(declared, want);
    }
}
