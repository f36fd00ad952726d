//! Label and field selectors: parsing the `labelSelector=` / `fieldSelector=` query values and
//! `metav1.LabelSelector` objects, and evaluating them against objects, as upstream
//! `k8s.io/apimachinery/pkg/labels` and `pkg/fields` do.
//!
//! Error messages follow upstream's wording so that the apiserver can hand them back verbatim in a
//! 400 BadRequest `Status` (e.g. `unable to parse requirement: found '', expected: identifier`).

use std::fmt;

use serde_json::{Map, Value};

/// Why a selector could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector requirement is malformed or invalid (bad key, bad value, bad operator use).
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A label selector is malformed between requirements (e.g. a dangling `,`).
    #[error("{0}")]
    Syntax(String),
    /// A `metav1.LabelSelector` object is invalid (bad operator, bad key or values, wrong JSON type).
    #[error("{0}")]
    InvalidLabelSelector(String),
    /// A field selector term has no `=`, `==` or `!=` operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm {
        /// The whole selector as given.
        selector: String,
        /// The term that could not be understood.
        term: String,
    },
    /// A field selector value contains a backslash not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A field selector value contains an unescaped `,` or `=`. Upstream prints the character's
    /// code point (Go's `%v` of a rune), and so does this message.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.0))]
    UnescapedCharacter(char),
}

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/// The operator of one label selector requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key in (a, b)`, or `matchExpressions` operator `In`.
    In,
    /// `key notin (a, b)`, or `matchExpressions` operator `NotIn`.
    NotIn,
    /// `key=value`, or an entry of `matchLabels`.
    Equals,
    /// `key==value`.
    DoubleEquals,
    /// `key!=value`.
    NotEquals,
    /// `key`, or `matchExpressions` operator `Exists`.
    Exists,
    /// `!key`, or `matchExpressions` operator `DoesNotExist`.
    DoesNotExist,
    /// `key>1`: the label exists and its integer value is greater.
    GreaterThan,
    /// `key<1`: the label exists and its integer value is smaller.
    LessThan,
}

/// One requirement of a label selector: a key, an operator and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, validating it as upstream's `labels.NewRequirement` does: the key is a
    /// qualified name, every value a label value, `In`/`NotIn` have values, `Exists`/`DoesNotExist`
    /// none, equality operators exactly one, `Gt`/`Lt` exactly one integer.
    /// The error is [`SelectorError::InvalidLabelSelector`] with upstream's field error list.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Requirement, SelectorError> {
        new_requirement(key, operator, values).map_err(SelectorError::InvalidLabelSelector)
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values (empty for `Exists` / `DoesNotExist`).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether this requirement holds for a label set; `get(key)` returns the label's value.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        let value = get(&self.key);
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(has),
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(has),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [wanted] = self.values.as_slice() else {
                    return false;
                };
                let Ok(wanted) = wanted.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan { actual > wanted } else { actual < wanted }
            }
        }
    }
}

/// Upstream's `labels.NewRequirement` validation; the error is the field error list text.
fn new_requirement(key: &str, operator: Operator, values: Vec<String>) -> Result<Requirement, String> {
    let mut errs = Vec::new();
    if let Some(e) = validate_label_key(key, "key") {
        errs.push(e);
    }
    match operator {
        Operator::In | Operator::NotIn => {
            if values.is_empty() {
                errs.push(format!(
                    "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                    go_string_slice(&values)
                ));
            }
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
            if values.len() != 1 {
                errs.push(format!(
                    "values: Invalid value: {}: exact-match compatibility requires one single value",
                    go_string_slice(&values)
                ));
            }
        }
        Operator::Exists | Operator::DoesNotExist => {
            if !values.is_empty() {
                errs.push(format!(
                    "values: Invalid value: {}: values set must be empty for exists and does not exist",
                    go_string_slice(&values)
                ));
            }
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errs.push(format!(
                    "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                    go_string_slice(&values)
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(format!(
                        "values[{i}]: Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an integer"
                    ));
                }
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let msgs = label_value_errors(v);
        if !msgs.is_empty() {
            errs.push(format!("values[{i}][{key}]: Invalid value: {v:?}: {}", msgs.join("; ")));
        }
    }
    if errs.is_empty() { Ok(Requirement { key: key.to_string(), operator, values }) } else { Err(aggregate(errs)) }
}

impl fmt::Display for Requirement {
    /// Upstream's canonical form: `!k`, `k`, `k=v`, `k==v`, `k!=v`, `k>v`, `k<v`,
    /// `k in (a,b)`, `k notin (a,b)`, with set values sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::Exists => return f.write_str(&self.key),
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            write!(f, "{}{op}({values})", self.key)
        } else {
            write!(f, "{}{op}{values}", self.key)
        }
    }
}

/// A label selector: requirements that must all hold.
///
/// Two special selectors exist, as upstream: [`LabelSelector::everything`] (no requirements; what
/// an empty query string or an empty `metav1.LabelSelector` `{}` gives) matches every object, and
/// [`LabelSelector::nothing`] (what a null/absent `metav1.LabelSelector` gives) matches none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// The selector that matches no object.
    pub fn nothing() -> LabelSelector {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// Parses the string form used by `?labelSelector=` (already URL-decoded), e.g.
    /// `app=web,env in (prod, qa),!canary,tier`. Requirements are sorted by key, and set values
    /// sorted and deduplicated, as upstream does.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let tokens = lex(s);
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// Converts a `metav1.LabelSelector` JSON object (`{"matchLabels": {..}, "matchExpressions":
    /// [{"key", "operator", "values"}]}`), as upstream's `LabelSelectorAsSelector`:
    /// `null` gives [`LabelSelector::nothing`], an object without requirements (`{}`) gives
    /// [`LabelSelector::everything`].
    pub fn from_json(value: &Value) -> Result<LabelSelector, SelectorError> {
        let invalid = |m: String| SelectorError::InvalidLabelSelector(m);
        let obj = match value {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(obj) => obj,
            other => {
                return Err(invalid(format!("label selector must be an object, got {other}")));
            }
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let Value::String(v) = v else {
                        return Err(invalid(format!("matchLabels[{k}]: value must be a string, got {v}")));
                    };
                    requirements.push(new_requirement(k, Operator::Equals, vec![v.clone()]).map_err(invalid)?);
                }
            }
            Some(other) => {
                return Err(invalid(format!("matchLabels must be an object, got {other}")));
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for expr in exprs {
                    requirements.push(expression_requirement(expr).map_err(invalid)?);
                }
            }
            Some(other) => {
                return Err(invalid(format!("matchExpressions must be a list, got {other}")));
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// True when the selector places no restriction (matches everything). The "nothing" selector
    /// is not empty.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for the selector that matches no object ([`LabelSelector::nothing`]).
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The single value a selector requires for `key` (an `=`, `==` or one-value `in` requirement
    /// on that key), as upstream's `RequiresExactMatch`; useful for indexing.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }

    /// Whether the selector matches a label set; `get(key)` returns the label's value.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(&get))
    }

    /// Whether the selector matches an object's labels given as a JSON map (`metadata.labels`).
    /// Values that are not strings count as absent.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        self.matches_with(|k| labels.get(k).and_then(Value::as_str))
    }

    /// Whether the selector matches an object's `metadata.labels` JSON value; `None`, `null` or a
    /// non-object means the object has no labels.
    pub fn matches_value(&self, labels: Option<&Value>) -> bool {
        match labels {
            Some(Value::Object(map)) => self.matches(map),
            _ => self.matches_with(|_| None),
        }
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string form (requirements joined by `,`), which [`LabelSelector::parse`]
    /// reads back. Both [`LabelSelector::everything`] and [`LabelSelector::nothing`] render as the
    /// empty string, as upstream.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn expression_requirement(expr: &Value) -> Result<Requirement, String> {
    let Value::Object(expr) = expr else {
        return Err(format!("matchExpressions: each expression must be an object, got {expr}"));
    };
    let key = match expr.get("key") {
        Some(Value::String(k)) => k.as_str(),
        None | Some(Value::Null) => "",
        Some(other) => {
            return Err(format!("matchExpressions: key must be a string, got {other}"));
        }
    };
    let op_name = match expr.get("operator") {
        Some(Value::String(o)) => o.as_str(),
        None | Some(Value::Null) => "",
        Some(other) => {
            return Err(format!("matchExpressions: operator must be a string, got {other}"));
        }
    };
    let operator = match op_name {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => return Err(format!("{other:?} is not a valid label selector operator")),
    };
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(vs)) => vs
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("matchExpressions: values must be strings, got {other}")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(format!("matchExpressions: values must be a list, got {other}"));
        }
    };
    new_requirement(key, operator, values)
}

// ----- lexer -----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier(String),
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

impl Token {
    /// The text upstream shows for the token in error messages.
    fn literal(&self) -> &str {
        match self {
            Token::EndOfString => "",
            Token::ClosedPar => ")",
            Token::Comma => ",",
            Token::DoesNotExist => "!",
            Token::DoubleEquals => "==",
            Token::Equals => "=",
            Token::GreaterThan => ">",
            Token::Identifier(s) => s,
            Token::In => "in",
            Token::LessThan => "<",
            Token::NotEquals => "!=",
            Token::NotIn => "notin",
            Token::OpenPar => "(",
        }
    }

    /// In a values context the keywords `in` and `notin` are plain identifiers.
    fn in_values_context(self) -> Token {
        match self {
            Token::In => Token::Identifier("in".to_string()),
            Token::NotIn => Token::Identifier("notin".to_string()),
            other => other,
        }
    }
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn symbol_token(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

/// Splits the selector into tokens; always ends with `EndOfString`.
fn lex(s: &str) -> Vec<Token> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut tokens = Vec::new();
    loop {
        while pos < bytes.len() && is_whitespace(bytes[pos]) {
            pos += 1;
        }
        if pos >= bytes.len() {
            tokens.push(Token::EndOfString);
            return tokens;
        }
        if is_special(bytes[pos]) {
            // Longest run of special characters that still forms a known symbol.
            let start = pos;
            let mut best: Option<(Token, usize)> = None;
            let mut end = pos;
            while end < bytes.len() && is_special(bytes[end]) {
                end += 1;
                match symbol_token(&bytes[start..end]) {
                    Some(t) => best = Some((t, end)),
                    None if best.is_some() => break,
                    None => {}
                }
            }
            // Every single special character is a symbol, so `best` is always set.
            let (token, next) = best.unwrap_or((Token::Comma, start + 1));
            tokens.push(token);
            pos = next;
        } else {
            let start = pos;
            while pos < bytes.len() && !is_special(bytes[pos]) && !is_whitespace(bytes[pos]) {
                pos += 1;
            }
            // Splits happen only at ASCII bytes, so the slice is valid UTF-8.
            let word = &s[start..pos];
            tokens.push(match word {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier(word.to_string()),
            });
        }
    }
}

// ----- parser -----

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

/// Error inside one requirement; wrapped into [`SelectorError::Requirement`].
type ReqResult<T> = Result<T, String>;

impl Parser {
    fn peek(&self, values: bool) -> Token {
        let t = self.tokens.get(self.pos).cloned().unwrap_or(Token::EndOfString);
        if values { t.in_values_context() } else { t }
    }

    fn next(&mut self, values: bool) -> Token {
        let t = self.peek(values);
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.peek(true) {
                Token::Identifier(_) | Token::DoesNotExist => {
                    let r = self.requirement().map_err(SelectorError::Requirement)?;
                    requirements.push(r);
                    match self.next(true) {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => match self.peek(true) {
                            Token::Identifier(_) | Token::DoesNotExist => {}
                            t => {
                                return Err(SelectorError::Syntax(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                )));
                            }
                        },
                        t => {
                            return Err(SelectorError::Syntax(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            )));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                t => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    )));
                }
            }
        }
    }

    fn requirement(&mut self) -> ReqResult<Requirement> {
        let (key, unary) = self.key_and_inferred_operator()?;
        if let Some(op) = unary {
            return new_requirement(&key, op, Vec::new());
        }
        let op = self.operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => vec![self.exact_value()?],
        };
        new_requirement(&key, op, values)
    }

    /// Reads `[!]KEY`; returns the unary operator when no binary operator follows.
    fn key_and_inferred_operator(&mut self) -> ReqResult<(String, Option<Operator>)> {
        let mut negated = false;
        let mut tok = self.next(true);
        if tok == Token::DoesNotExist {
            negated = true;
            tok = self.next(true);
        }
        let Token::Identifier(key) = tok else {
            return Err(format!("found '{}', expected: identifier", tok.literal()));
        };
        if let Some(e) = validate_label_key(&key, "<nil>") {
            return Err(e);
        }
        let op = if negated {
            Some(Operator::DoesNotExist)
        } else if matches!(self.peek(true), Token::EndOfString | Token::Comma) {
            Some(Operator::Exists)
        } else {
            None
        };
        Ok((key, op))
    }

    fn operator(&mut self) -> ReqResult<Operator> {
        Ok(match self.next(false) {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            t => {
                return Err(format!("found '{}', expected: in, notin, =, ==, !=, gt, lt", t.literal()));
            }
        })
    }

    /// Reads `( v1, v2, ... )`; returns the values sorted and deduplicated.
    fn set_values(&mut self) -> ReqResult<Vec<String>> {
        let t = self.next(true);
        if t != Token::OpenPar {
            return Err(format!("found '{}' expected: '('", t.literal()));
        }
        let first = self.peek(true);
        let mut values = match first {
            Token::Identifier(_) | Token::Comma => {
                let list = self.identifiers_list()?;
                if self.next(true) != Token::ClosedPar {
                    return Err(format!("found '{}', expected: ')'", first.literal()));
                }
                list
            }
            Token::ClosedPar => {
                self.next(true);
                vec![String::new()]
            }
            t => {
                return Err(format!("found '{}', expected: ',', ')' or identifier", t.literal()));
            }
        };
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// Reads a comma-separated list of possibly empty identifiers, up to (not including) `)`.
    fn identifiers_list(&mut self) -> ReqResult<Vec<String>> {
        let mut values: Vec<String> = Vec::new();
        loop {
            match self.next(true) {
                Token::Identifier(v) => {
                    values.push(v);
                    match self.peek(true) {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        t => {
                            return Err(format!("found '{}', expected: ',' or ')'", t.literal()));
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.push(String::new()); // "(,"
                    }
                    match self.peek(true) {
                        Token::ClosedPar => {
                            values.push(String::new()); // ",)"
                            return Ok(values);
                        }
                        Token::Comma => {
                            self.next(true);
                            values.push(String::new()); // ",,"
                        }
                        _ => {}
                    }
                }
                t => {
                    return Err(format!("found '{}', expected: ',', or identifier", t.literal()));
                }
            }
        }
    }

    fn exact_value(&mut self) -> ReqResult<String> {
        if matches!(self.peek(true), Token::EndOfString | Token::Comma) {
            return Ok(String::new());
        }
        match self.next(true) {
            Token::Identifier(v) => Ok(v),
            t => Err(format!("found '{}', expected: identifier", t.literal())),
        }
    }
}

// ----- validation (k8s.io/apimachinery/pkg/util/validation) -----

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const NAME_MAX_LEN: usize = 63;
const SUBDOMAIN_MAX_LEN: usize = 253;

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn is_dns1123_label_like(s: &str) -> bool {
    let b = s.as_bytes();
    let ok_end = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => ok_end(f) && ok_end(l) && b.iter().all(|c| ok_end(c) || *c == b'-'),
        _ => false,
    }
}

pub fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > SUBDOMAIN_MAX_LEN {
        errs.push(max_len_error(SUBDOMAIN_MAX_LEN));
    }
    if !s.split('.').all(is_dns1123_label_like) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// Upstream's `IsQualifiedName`.
pub fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(dns1123_subdomain_errors(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > NAME_MAX_LEN {
        errs.push(format!("name part {}", max_len_error(NAME_MAX_LEN)));
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// Upstream's `IsValidLabelValue`.
fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > NAME_MAX_LEN {
        errs.push(max_len_error(NAME_MAX_LEN));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// Validates a label key; the error is a field error at `path` (upstream prints `<nil>` for the
/// path of a key met while parsing a selector string).
fn validate_label_key(key: &str, path: &str) -> Option<String> {
    let errs = qualified_name_errors(key);
    if errs.is_empty() { None } else { Some(format!("{path}: Invalid value: {key:?}: {}", errs.join("; "))) }
}

/// Go's `%#v` of a `[]string`, as upstream's field errors print it.
fn go_string_slice(values: &[String]) -> String {
    let inner: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", inner.join(", "))
}

/// Upstream's aggregate error text: one message alone, several in brackets.
fn aggregate(errs: Vec<String>) -> String {
    if errs.len() == 1 { errs.into_iter().next().unwrap_or_default() } else { format!("[{}]", errs.join(", ")) }
}

// ---------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------

/// The operator of a field selector requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOp {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One `field<op>value` term of a field selector; `value` is unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path, e.g. `metadata.name` or `spec.nodeName`.
    pub field: String,
    /// `=` / `==` or `!=`.
    pub op: FieldOp,
    /// The literal value, with upstream's `\,` `\=` `\\` escapes removed.
    pub value: String,
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FieldOp::Equals => "=",
            FieldOp::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_field_value(&self.value))
    }
}

/// A field selector: `field=value` / `field!=value` terms that must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// Parses the string form used by `?fieldSelector=` (already URL-decoded): comma-separated
    /// `field=value`, `field==value` or `field!=value` terms, where `,` `=` and `\` inside values
    /// are escaped with a backslash. Terms are sorted as upstream sorts them; empty terms are
    /// skipped. Field names are not checked here: which fields a kind supports is the caller's
    /// business.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut terms = split_field_terms(s);
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, op, raw)) = split_field_term(term) else {
                return Err(SelectorError::FieldTerm { selector: s.to_string(), term: term.to_string() });
            };
            requirements.push(FieldRequirement { field: field.to_string(), op, value: unescape_field_value(raw)? });
        }
        Ok(FieldSelector { requirements })
    }

    /// The requirements, in parse order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when the selector places no restriction.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every requirement holds; `get(field)` returns the object's value for that field
    /// path, and `None` is taken as the empty string (as upstream's `fields.Set`).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = get(&r.field).unwrap_or_default();
            match r.op {
                FieldOp::Equals => actual == r.value,
                FieldOp::NotEquals => actual != r.value,
            }
        })
    }

    /// The value of the first `=` requirement on `field`, as upstream's `RequiresExactMatch`
    /// (e.g. `spec.nodeName` for a kubelet's pod watch).
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements.iter().find(|r| r.field == field && r.op == FieldOp::Equals).map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// Terms joined by `,`, values escaped; [`FieldSelector::parse`] reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` in a field selector value.
pub fn escape_field_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits at commas not preceded by a backslash escape; escapes stay in the terms.
fn split_field_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_escape = false;
    for (i, c) in s.char_indices() {
        if in_escape {
            in_escape = false;
        } else if c == '\\' {
            in_escape = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first operator (`!=`, then `==`, then `=` at each position); the field
/// part has no escaping.
fn split_field_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op_text, op) in [("!=", FieldOp::NotEquals), ("==", FieldOp::Equals), ("=", FieldOp::Equals)] {
            if let Some(value) = rest.strip_prefix(op_text) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

fn unescape_field_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_escape = false;
    for c in s.chars() {
        if in_escape {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::InvalidEscape(format!("\\{c}")));
            }
            out.push(c);
            in_escape = false;
            continue;
        }
        match c {
            '\\' => in_escape = true,
            ',' | '=' => return Err(SelectorError::UnescapedCharacter(c)),
            _ => out.push(c),
        }
    }
    if in_escape {
        return Err(SelectorError::InvalidEscape("\\".to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Value {
        Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect())
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("parse {s:?}: {e}"))
    }

    fn parse_err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(v) => panic!("{s:?} parsed as {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    // ----- label selector parsing -----

    #[test]
    fn parses_equality_forms() {
        let s = sel("a=b");
        assert_eq!(s.requirements().len(), 1);
        assert_eq!(s.requirements()[0].key(), "a");
        assert_eq!(s.requirements()[0].operator(), Operator::Equals);
        assert_eq!(s.requirements()[0].values(), ["b".to_string()]);
        assert_eq!(sel("a==b").requirements()[0].operator(), Operator::DoubleEquals);
        assert_eq!(sel("a!=b").requirements()[0].operator(), Operator::NotEquals);
    }

    #[test]
    fn parses_set_based_forms() {
        let s = sel("env in (prod, qa),tier notin (x),partition,!canary");
        let ops: Vec<(&str, Operator)> = s.requirements().iter().map(|r| (r.key(), r.operator())).collect();
        // sorted by key
        assert_eq!(
            ops,
            vec![
                ("canary", Operator::DoesNotExist),
                ("env", Operator::In),
                ("partition", Operator::Exists),
                ("tier", Operator::NotIn),
            ]
        );
        assert_eq!(s.requirements()[1].values(), ["prod", "qa"]);
    }

    #[test]
    fn parses_gt_lt() {
        let s = sel("a>1,b<10");
        assert_eq!(s.requirements()[0].operator(), Operator::GreaterThan);
        assert_eq!(s.requirements()[1].operator(), Operator::LessThan);
        assert_eq!(s.to_string(), "a>1,b<10");
    }

    #[test]
    fn tolerates_whitespace() {
        let s = sel("  x in ( a , b ) ,  y = z ,\t!w\n");
        assert_eq!(s.to_string(), "!w,x in (a,b),y=z");
        assert_eq!(sel("a = b").to_string(), "a=b");
    }

    #[test]
    fn empty_selector_is_everything() {
        assert!(sel("").is_empty());
        assert!(sel("   ").is_empty());
        assert!(sel("").matches_value(None));
        assert_eq!(sel("").to_string(), "");
    }

    #[test]
    fn parses_upstream_documented_example() {
        // "x in (foo,,baz),y,z notin ()" from upstream's Parse doc.
        let s = sel("x in (foo,,baz),y,z notin ()");
        assert_eq!(s.requirements()[0].values(), ["", "baz", "foo"]);
        assert_eq!(s.requirements()[2].values(), [""]);
        assert_eq!(s.to_string(), "x in (,baz,foo),y,z notin ()");
    }

    #[test]
    fn empty_values_in_sets_and_equality() {
        assert_eq!(sel("x in (,a)").requirements()[0].values(), ["", "a"]);
        assert_eq!(sel("x in (a,)").requirements()[0].values(), ["", "a"]);
        assert_eq!(sel("x=").requirements()[0].values(), [""]);
        assert_eq!(sel("x=,y=a").requirements()[0].values(), [""]);
        // duplicate values collapse
        assert_eq!(sel("x in (b,a,b)").requirements()[0].values(), ["a", "b"]);
    }

    #[test]
    fn keywords_are_values_and_keys_in_value_context() {
        assert_eq!(sel("x in (in,notin)").requirements()[0].values(), ["in", "notin"]);
        assert_eq!(sel("x=in").requirements()[0].values(), ["in"]);
        let s = sel("in=notin");
        assert_eq!(s.requirements()[0].key(), "in");
    }

    #[test]
    fn prefixed_keys() {
        let s = sel("app.kubernetes.io/name=web,example.com/x!=y");
        assert_eq!(s.requirements()[0].key(), "app.kubernetes.io/name");
        assert_eq!(s.requirements()[1].key(), "example.com/x");
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(parse_err("x=a,"), "found '', expected: identifier after ','");
        assert_eq!(parse_err(",x"), "found ',', expected: !, identifier, or 'end of string'");
        assert_eq!(parse_err("x=a y"), "found 'y', expected: ',' or 'end of string'");
        assert_eq!(parse_err("x in a"), "unable to parse requirement: found 'a' expected: '('");
        assert_eq!(parse_err("x in (a"), "unable to parse requirement: found '', expected: ',' or ')'");
        assert_eq!(parse_err("x in (a b)"), "unable to parse requirement: found 'b', expected: ',' or ')'");
        assert_eq!(parse_err("x y"), "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt");
        assert_eq!(parse_err("!"), "unable to parse requirement: found '', expected: identifier");
        assert_eq!(parse_err("x=(a)"), "unable to parse requirement: found '(', expected: identifier");
        assert_eq!(parse_err("!x=a"), "found '=', expected: ',' or 'end of string'");
    }

    #[test]
    fn double_equals_with_no_value_is_the_empty_value() {
        // upstream: "x==" is key x, operator ==, value "" (end of string after operator)
        let s = sel("x==");
        assert_eq!(s.requirements()[0].operator(), Operator::DoubleEquals);
        assert_eq!(s.requirements()[0].values(), [""]);
    }

    #[test]
    fn invalid_key_errors() {
        let e = parse_err("-a=b");
        assert!(
            e.starts_with("unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of alphanumeric characters"),
            "{e}"
        );
        assert!(e.contains("regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'"), "{e}");
        let long = "a".repeat(64);
        let e = parse_err(&format!("{long}=b"));
        assert!(e.contains("name part must be no more than 63 characters"), "{e}");
        let e = parse_err("Example.com/a=b");
        assert!(e.contains("prefix part a lowercase RFC 1123 subdomain"), "{e}");
        let e = parse_err("/a=b");
        assert!(e.contains("prefix part must be non-empty"), "{e}");
        let e = parse_err("a/b/c=d");
        assert!(e.contains("a qualified name must consist of"), "{e}");
        let e = parse_err("example.com/=d");
        assert!(e.contains("name part must be non-empty"), "{e}");
    }

    #[test]
    fn invalid_value_errors() {
        let e = parse_err("a=-b");
        assert!(
            e.starts_with("unable to parse requirement: values[0][a]: Invalid value: \"-b\": a valid label must be an empty string"),
            "{e}"
        );
        let long = "v".repeat(64);
        let e = parse_err(&format!("a={long}"));
        assert!(e.contains("must be no more than 63 characters"), "{e}");
        let e = parse_err("a in (ok,_bad)");
        assert!(e.contains("values[0][a]: Invalid value: \"_bad\""), "{e}");
        // 63 characters is fine
        sel(&format!("a={}", "v".repeat(63)));
    }

    #[test]
    fn gt_lt_need_integers() {
        let e = parse_err("a>b");
        assert_eq!(
            e,
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        // a negative number is not a valid label value upstream either
        let e = parse_err("a<-1");
        assert!(e.contains("a valid label must be"), "{e}");
    }

    #[test]
    fn requirement_new_builds_and_validates() {
        let r = Requirement::new("tier", Operator::NotIn, vec!["cache".into()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.to_string(), "tier notin (cache)");
        assert!(r.matches(|_| None));
        assert!(!r.matches(|_| Some("cache")));
        assert!(matches!(Requirement::new("a", Operator::Equals, vec![]), Err(SelectorError::InvalidLabelSelector(_))));
        assert!(Requirement::new("a", Operator::GreaterThan, vec!["1".into(), "2".into()]).is_err());
    }

    #[test]
    fn several_errors_are_aggregated() {
        let e = Requirement::new("-k", Operator::In, vec![]).unwrap_err().to_string();
        assert!(e.starts_with("[key: Invalid value: \"-k\""), "{e}");
        assert!(
            e.ends_with("values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty]"),
            "{e}"
        );
    }

    // ----- label selector matching -----

    #[test]
    fn matches_equality() {
        let l = labels(&[("app", "web"), ("env", "prod")]);
        assert!(sel("app=web").matches_value(Some(&l)));
        assert!(sel("app==web,env=prod").matches_value(Some(&l)));
        assert!(!sel("app=db").matches_value(Some(&l)));
        assert!(!sel("missing=x").matches_value(Some(&l)));
        assert!(sel("app!=db").matches_value(Some(&l)));
        assert!(!sel("app!=web").matches_value(Some(&l)));
        // != matches when the label is absent
        assert!(sel("missing!=x").matches_value(Some(&l)));
        assert!(sel("missing!=x").matches_value(None));
    }

    #[test]
    fn matches_sets_and_existence() {
        let l = labels(&[("env", "qa"), ("partition", "")]);
        assert!(sel("env in (prod, qa)").matches_value(Some(&l)));
        assert!(!sel("env in (prod)").matches_value(Some(&l)));
        assert!(sel("env notin (prod)").matches_value(Some(&l)));
        assert!(!sel("env notin (qa)").matches_value(Some(&l)));
        assert!(sel("tier notin (x)").matches_value(Some(&l)));
        assert!(sel("partition").matches_value(Some(&l)));
        assert!(!sel("!partition").matches_value(Some(&l)));
        assert!(sel("!other").matches_value(Some(&l)));
        assert!(!sel("other").matches_value(Some(&l)));
        assert!(sel("partition=").matches_value(Some(&l)));
        assert!(sel("partition in ()").matches_value(Some(&l)));
    }

    #[test]
    fn matches_gt_lt() {
        let l = labels(&[("n", "5"), ("s", "abc")]);
        assert!(sel("n>4").matches_value(Some(&l)));
        assert!(!sel("n>5").matches_value(Some(&l)));
        assert!(sel("n<6").matches_value(Some(&l)));
        assert!(!sel("n<5").matches_value(Some(&l)));
        assert!(!sel("s>1").matches_value(Some(&l)));
        assert!(!sel("missing<100").matches_value(Some(&l)));
    }

    #[test]
    fn matches_absent_or_odd_labels() {
        assert!(sel("!a").matches_value(None));
        assert!(sel("!a").matches_value(Some(&Value::Null)));
        assert!(!sel("a").matches_value(None));
        // non-string label values count as absent
        assert!(!sel("a=1").matches_value(Some(&json!({"a": 1}))));
        let map = json!({"a": "1"});
        assert!(sel("a=1").matches(map.as_object().unwrap_or(&Map::new())));
    }

    #[test]
    fn matches_with_closure() {
        let s = sel("a=1,b");
        assert!(s.matches_with(|k| match k {
            "a" => Some("1"),
            "b" => Some("x"),
            _ => None,
        }));
        assert!(!s.matches_with(|k| (k == "a").then_some("1")));
    }

    #[test]
    fn requires_exact_match() {
        let s = sel("a=1,b in (x),c in (x,y),d!=z");
        assert_eq!(s.requires_exact_match("a"), Some("1"));
        assert_eq!(s.requires_exact_match("b"), Some("x"));
        assert_eq!(s.requires_exact_match("c"), None);
        assert_eq!(s.requires_exact_match("d"), None);
        assert_eq!(s.requires_exact_match("e"), None);
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "a=b",
            "a==b",
            "a!=b",
            "a in (x,y)",
            "a notin (x)",
            "a",
            "!a",
            "a>3",
            "a<3",
            "a=b,c in (d,e),!f,g",
            "example.com/key in (,v)",
        ] {
            let s = sel(input);
            let rendered = s.to_string();
            assert_eq!(sel(&rendered), s, "{input} -> {rendered}");
        }
        assert_eq!(sel("b=1,a=2").to_string(), "a=2,b=1");
        assert_eq!(sel("a in (z, y)").to_string(), "a in (y,z)");
    }

    // ----- metav1.LabelSelector -----

    #[test]
    fn from_json_match_labels_and_expressions() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "qa"]},
                {"key": "tier", "operator": "NotIn", "values": ["cache"]},
                {"key": "partition", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist", "values": []}
            ]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.to_string(), "app=web,!canary,env in (prod,qa),partition,tier notin (cache)");
        let ok = labels(&[("app", "web"), ("env", "qa"), ("partition", "1")]);
        assert!(s.matches_value(Some(&ok)));
        let canary = labels(&[("app", "web"), ("env", "qa"), ("partition", "1"), ("canary", "y")]);
        assert!(!s.matches_value(Some(&canary)));
        let cache = labels(&[("app", "web"), ("env", "qa"), ("partition", "1"), ("tier", "cache")]);
        assert!(!s.matches_value(Some(&cache)));
    }

    #[test]
    fn from_json_empty_matches_everything_null_matches_nothing() {
        let all = LabelSelector::from_json(&json!({})).unwrap_or_else(|e| panic!("{e}"));
        assert!(all.is_empty());
        assert!(all.matches_value(None));
        assert!(all.matches_value(Some(&labels(&[("a", "b")]))));
        let all2 = LabelSelector::from_json(&json!({"matchLabels": {}, "matchExpressions": []}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(all2.is_empty());

        let none = LabelSelector::from_json(&Value::Null).unwrap_or_else(|e| panic!("{e}"));
        assert!(!none.is_empty());
        assert!(none.matches_nothing());
        assert!(!none.matches_value(None));
        assert!(!none.matches_value(Some(&labels(&[("a", "b")]))));
        assert!(LabelSelector::nothing().matches_nothing());
        assert!(!LabelSelector::everything().matches_nothing());
    }

    #[test]
    fn from_json_validation_errors() {
        let err = |v: Value| match LabelSelector::from_json(&v) {
            Ok(s) => panic!("{v} accepted as {s:?}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})),
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "NotIn"}]})),
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})),
            "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]})),
            "\"Equals\" is not a valid label selector operator"
        );
        assert!(err(json!({"matchLabels": {"-a": "b"}})).starts_with("key: Invalid value: \"-a\""));
        assert!(err(json!({"matchLabels": {"a": "b c"}})).starts_with("values[0][a]: Invalid value: \"b c\""));
        assert!(err(json!({"matchLabels": {"a": 1}})).contains("must be a string"));
        assert!(err(json!("app=web")).contains("must be an object"));
        assert!(err(json!({"matchExpressions": {}})).contains("must be a list"));
    }

    // ----- field selectors -----

    fn fsel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("parse {s:?}: {e}"))
    }

    fn getter<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |f| pairs.iter().find(|(k, _)| *k == f).map(|(_, v)| v.to_string())
    }

    #[test]
    fn field_selector_parses_operators() {
        let s = fsel("metadata.name=foo,spec.nodeName==node-1,status.phase!=Running");
        let reqs = s.requirements();
        assert_eq!(reqs.len(), 3);
        assert_eq!(
            reqs[0],
            FieldRequirement { field: "metadata.name".into(), op: FieldOp::Equals, value: "foo".into() }
        );
        assert_eq!(reqs[1].field, "spec.nodeName");
        assert_eq!(reqs[1].op, FieldOp::Equals);
        assert_eq!(reqs[2].op, FieldOp::NotEquals);
        assert_eq!(reqs[2].value, "Running");
    }

    #[test]
    fn field_selector_sorts_terms_and_skips_empty_ones() {
        let s = fsel("b=1,,a=2,");
        assert_eq!(s.to_string(), "a=2,b=1");
        assert!(fsel("").is_empty());
        assert!(fsel(",").is_empty());
        assert!(!s.is_empty());
    }

    #[test]
    fn field_selector_empty_value() {
        let s = fsel("spec.nodeName=");
        assert_eq!(s.requirements()[0].value, "");
        assert!(s.matches(getter(&[])));
        assert!(!s.matches(getter(&[("spec.nodeName", "n1")])));
    }

    #[test]
    fn field_selector_escapes() {
        let s = fsel(r"metadata.name=a\,b\=c\\d");
        assert_eq!(s.requirements()[0].value, r"a,b=c\d");
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d");
        assert_eq!(fsel(&s.to_string()), s);
        // escaped comma does not split terms
        let s = fsel(r"a=x\,y,b=z");
        assert_eq!(s.requirements().len(), 2);
        assert_eq!(s.requirements()[0].value, "x,y");
        assert_eq!(escape_field_value(r"a,b=c\"), r"a\,b\=c\\");
    }

    #[test]
    fn field_selector_errors() {
        assert_eq!(
            FieldSelector::parse("metadata.name").unwrap_err().to_string(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        assert_eq!(
            FieldSelector::parse("a=b,c").unwrap_err().to_string(),
            "invalid selector: 'a=b,c'; can't understand 'c'"
        );
        assert_eq!(FieldSelector::parse(r"a=b\x").unwrap_err(), SelectorError::InvalidEscape(r"\x".into()));
        assert_eq!(
            FieldSelector::parse(r"a=b\").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \"
        );
        // the first "=" splits; a second one in the value must be escaped
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(FieldSelector::parse("a==b=c").unwrap_err(), SelectorError::UnescapedCharacter('='));
    }

    #[test]
    fn field_selector_operator_precedence() {
        // "!=" wins at the first position where any operator starts
        let s = fsel("a!=b");
        assert_eq!(s.requirements()[0].op, FieldOp::NotEquals);
        // an empty field name is accepted by the parser (the caller rejects unknown fields)
        let s = fsel("=b");
        assert_eq!(s.requirements()[0].field, "");
    }

    #[test]
    fn field_selector_matching() {
        let pod = [
            ("metadata.name", "web-0"),
            ("metadata.namespace", "default"),
            ("spec.nodeName", "node-1"),
            ("status.phase", "Running"),
        ];
        assert!(fsel("metadata.name=web-0").matches(getter(&pod)));
        assert!(fsel("spec.nodeName=node-1,status.phase!=Failed").matches(getter(&pod)));
        assert!(!fsel("spec.nodeName=node-2").matches(getter(&pod)));
        assert!(!fsel("status.phase!=Running").matches(getter(&pod)));
        // unknown fields read as ""
        assert!(fsel("spec.other=").matches(getter(&pod)));
        assert!(fsel("spec.other!=x").matches(getter(&pod)));
        assert!(FieldSelector::everything().matches(getter(&pod)));
    }

    #[test]
    fn field_selector_exact_match() {
        let s = fsel("spec.nodeName=node-1,metadata.name!=x");
        assert_eq!(s.exact_match("spec.nodeName"), Some("node-1"));
        assert_eq!(s.exact_match("metadata.name"), None);
        assert_eq!(s.exact_match("status.phase"), None);
        assert_eq!(fsel("spec.nodeName==").exact_match("spec.nodeName"), Some(""));
    }

    #[test]
    fn field_selector_display_round_trips() {
        for input in ["a=b", "a!=b", "a=b,c!=d", r"x=\,\=\\", "spec.nodeName="] {
            let s = fsel(input);
            assert_eq!(fsel(&s.to_string()), s, "{input}");
        }
        assert_eq!(fsel("a==b").to_string(), "a=b");
    }
}
