//! The subset of client-go's `util/jsonpath` that printer columns and selectable fields use: templates of text
//! and `{...}` actions with fields (`.a.b`, `['a.b']`, `.*`), array indexes and slices (`[0]`, `[-1]`, `[1:3]`,
//! `[*]`), unions (`[0,2]`), filters (`[?(@.type=="Ready")]`, `[?(@.x)]`), recursive descent (`..name`) and
//! quoted literals, with upstream's results (one list per action), printing (`PrintResults`) and errors, plus
//! apiextensions' check that a column path is a simple `.a.b.c`.

use crate::apiextensions::schema::field::{FieldError, go_float, go_json};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Field(String),
    Wildcard,
    Recursive,
    Array([Param; 3]),
    Union(Vec<Vec<Node>>),
    Filter { left: Vec<Node>, right: Vec<Node>, op: String },
    Int(i64),
    Float(f64),
    Bool(bool),
    Identifier(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Param {
    value: i64,
    known: bool,
    derived: bool,
}

/// A parsed template: literal text and actions, each action a list of steps.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    parts: Vec<Part>,
    allow_missing_keys: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action(Vec<Node>),
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Option<char> {
        let c = self.input[self.pos..].chars().next()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn backup(&mut self, c: char) {
        self.pos -= c.len_utf8();
    }

    fn consume(&mut self) -> &'a str {
        let s = &self.input[self.start..self.pos];
        self.start = self.pos;
        s
    }

    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    /// upstream `parseInsideAction`: steps until the closing `}` (or the end of a sub-expression).
    fn inside_action(&mut self, cur: &mut Vec<Node>, sub: bool) -> Result<(), String> {
        loop {
            if !sub && self.rest().starts_with('}') {
                self.pos += 1;
                self.consume();
                return Ok(());
            }
            if self.rest().starts_with("[?(") {
                self.filter(cur)?;
                continue;
            }
            if self.rest().starts_with("..") {
                self.pos += 2;
                self.consume();
                cur.push(Node::Recursive);
                if self.peek().is_some_and(is_alphanumeric) {
                    self.pos -= 1;
                    self.start = self.pos;
                    self.field(cur)?;
                }
                continue;
            }
            let Some(r) = self.next() else {
                return if sub { Ok(()) } else { Err("unclosed action".into()) };
            };
            match r {
                '\n' | '\r' => return Err("unclosed action".into()),
                ' ' | '@' | '$' => {
                    self.consume();
                }
                '[' => self.array(cur)?,
                '"' | '\'' => self.quote(cur, r)?,
                '.' => self.field(cur)?,
                '+' | '-' | '0'..='9' => {
                    self.backup(r);
                    self.number(cur)?;
                }
                c if is_alphanumeric(c) => {
                    self.backup(r);
                    self.identifier(cur);
                }
                c => return Err(format!("unrecognized character in action: U+{:04X} '{c}'", c as u32)),
            }
        }
    }

    fn field(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        self.consume();
        while let Some(r) = self.next() {
            if r == '\\' {
                self.next();
            } else if is_terminator(r) {
                self.backup(r);
                break;
            }
        }
        let value = self.consume();
        if value == "*" {
            cur.push(Node::Wildcard);
        } else {
            cur.push(Node::Field(value.replace('\\', "")));
        }
        Ok(())
    }

    fn array(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        loop {
            match self.next() {
                None | Some('\n') => return Err("unterminated array".into()),
                Some(']') => break,
                _ => {}
            }
        }
        let text = self.consume();
        let mut text = &text[1..text.len() - 1];
        if text == "*" {
            text = ":";
        }
        let parts: Vec<&str> = text.split(',').collect();
        if parts.len() > 1 {
            let mut union = Vec::new();
            for p in parts {
                union.push(parse_sub(&format!("[{}]", p.trim_matches(' ')))?);
            }
            cur.push(Node::Union(union));
            return Ok(());
        }
        if text.len() >= 2 && text.starts_with('\'') && text.ends_with('\'') && !text[1..text.len() - 1].contains('\'')
        {
            cur.extend(parse_sub(&format!(".{}", &text[1..text.len() - 1]))?);
            return Ok(());
        }
        let sections: Vec<&str> = text.split(':').collect();
        let number = |s: &str| s.is_empty() || s.strip_prefix('-').unwrap_or(s).bytes().all(|b| b.is_ascii_digit());
        if sections.len() > 3 || !sections.iter().all(|s| number(s)) {
            return Err(format!("invalid array index {text}"));
        }
        let mut params = [Param::default(); 3];
        for i in 0..3 {
            match sections.get(i) {
                Some(s) if !s.is_empty() => {
                    params[i].known = true;
                    params[i].value = s.parse().map_err(|_| format!("array index {s} is not a number"))?;
                }
                Some(_) if i > 0 => params[i].known = false,
                _ if i == 1 => {
                    params[1] = Param { known: true, value: params[0].value + 1, derived: true };
                }
                _ => {}
            }
        }
        cur.push(Node::Array(params));
        Ok(())
    }

    fn quote(&mut self, cur: &mut Vec<Node>, end: char) -> Result<(), String> {
        loop {
            match self.next() {
                None | Some('\n') => return Err("unterminated quoted string".into()),
                Some(c) if c == end && !self.input[..self.pos - 1].ends_with('\\') => break,
                _ => {}
            }
        }
        let value = self.consume();
        let inner = &value[1..value.len() - 1];
        let mut s = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some(o) => s.push(o),
                    None => {}
                }
            } else {
                s.push(c);
            }
        }
        cur.push(Node::Text(s));
        Ok(())
    }

    fn number(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        self.consume();
        if matches!(self.peek(), Some('+' | '-')) {
            self.next();
        }
        while let Some(c) = self.peek().filter(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == 'E') {
            self.pos += c.len_utf8();
        }
        let value = self.consume();
        if let Ok(i) = value.parse::<i64>() {
            cur.push(Node::Int(i));
        } else if let Ok(f) = value.parse::<f64>() {
            cur.push(Node::Float(f));
        } else {
            return Err(format!("cannot parse number {value}"));
        }
        Ok(())
    }

    fn identifier(&mut self, cur: &mut Vec<Node>) {
        self.consume();
        while let Some(c) = self.peek().filter(|c| is_alphanumeric(*c)) {
            self.pos += c.len_utf8();
        }
        let value = self.consume();
        match value {
            "true" => cur.push(Node::Bool(true)),
            "false" => cur.push(Node::Bool(false)),
            v => cur.push(Node::Identifier(v.to_string())),
        }
    }

    fn filter(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        self.pos += 3;
        self.consume();
        let (mut begin, mut end, mut pair) = (false, false, '"');
        loop {
            match self.next() {
                None | Some('\n') => return Err("unterminated filter".into()),
                Some(r @ ('"' | '\'')) => {
                    if !begin {
                        begin = true;
                        pair = r;
                        continue;
                    }
                    if !self.input[..self.pos - 1].ends_with('\\') && r == pair {
                        end = true;
                    }
                }
                Some(')') if begin == end => break,
                _ => {}
            }
        }
        if self.next() != Some(']') {
            return Err("unclosed array expect ]".into());
        }
        let text = self.consume();
        let text = &text[..text.len() - 2];
        // `^([^!<>=]+)([!<>=]+)(.+?)$`
        let op_start = text.find(['!', '<', '>', '=']);
        match op_start {
            Some(i) if i > 0 => {
                let op_len = text[i..].find(|c| !"!<>=".contains(c)).unwrap_or(text.len() - i);
                let (left, op, right) = (&text[..i], &text[i..i + op_len], &text[i + op_len..]);
                if right.is_empty() {
                    cur.push(Node::Filter { left: parse_sub(text)?, right: Vec::new(), op: "exists".into() });
                } else {
                    cur.push(Node::Filter { left: parse_sub(left)?, right: parse_sub(right)?, op: op.to_string() });
                }
            }
            _ => cur.push(Node::Filter { left: parse_sub(text)?, right: Vec::new(), op: "exists".into() }),
        }
        Ok(())
    }
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn is_terminator(r: char) -> bool {
    r.is_whitespace() || matches!(r, '.' | ',' | '[' | ']' | '$' | '@' | '{' | '}')
}

/// A sub-expression (filter operands, union members), parsed as the inside of an action.
fn parse_sub(text: &str) -> Result<Vec<Node>, String> {
    let mut p = Parser { input: text, pos: 0, start: 0 };
    let mut nodes = Vec::new();
    p.inside_action(&mut nodes, true)?;
    Ok(nodes)
}

impl JsonPath {
    /// Parses a template such as `{.spec.replicas}` or `name: {.metadata.name}`.
    pub fn parse(template: &str) -> Result<JsonPath, String> {
        let mut parts = Vec::new();
        let mut p = Parser { input: template, pos: 0, start: 0 };
        loop {
            match p.rest().find('{') {
                None => {
                    if !p.rest().is_empty() {
                        parts.push(Part::Text(p.rest().to_string()));
                    }
                    break;
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(p.rest()[..i].to_string()));
                    }
                    p.pos += i + 1;
                    p.start = p.pos;
                    let mut nodes = Vec::new();
                    p.inside_action(&mut nodes, false)?;
                    parts.push(Part::Action(nodes));
                }
            }
        }
        Ok(JsonPath { parts, allow_missing_keys: false })
    }

    /// Missing fields yield no result instead of an error (as printer columns use it).
    pub fn allow_missing_keys(mut self, allow: bool) -> Self {
        self.allow_missing_keys = allow;
        self
    }

    /// upstream `FindResults`: one list of values per text part and action.
    pub fn find_results(&self, data: &Value) -> Result<Vec<Vec<Value>>, String> {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => Ok(vec![Value::from(t.as_str())]),
                Part::Action(nodes) => self.eval_list(vec![data.clone()], nodes),
            })
            .collect()
    }

    /// upstream `Execute`: the printed results of every part, concatenated.
    pub fn execute(&self, data: &Value) -> Result<String, String> {
        let mut out = String::new();
        for r in self.find_results(data)? {
            out.push_str(&print_results(&r)?);
        }
        Ok(out)
    }

    fn eval_list(&self, mut cur: Vec<Value>, nodes: &[Node]) -> Result<Vec<Value>, String> {
        for n in nodes {
            cur = self.walk(cur, n)?;
        }
        Ok(cur)
    }

    fn walk(&self, input: Vec<Value>, node: &Node) -> Result<Vec<Value>, String> {
        match node {
            Node::Text(t) => Ok(vec![Value::from(t.as_str())]),
            Node::Int(i) => Ok(vec![Value::from(*i)]),
            Node::Float(f) => Ok(vec![Value::from(*f)]),
            Node::Bool(b) => Ok(vec![Value::from(*b)]),
            Node::Identifier(i) => Err(format!("unrecognized identifier {i}")),
            Node::Field(name) => {
                if input.is_empty() || name.is_empty() {
                    return Ok(input);
                }
                let out: Vec<Value> =
                    input.iter().filter_map(|v| v.as_object().and_then(|m| m.get(name)).cloned()).collect();
                if out.is_empty() && !self.allow_missing_keys {
                    return Err(format!("{name} is not found"));
                }
                Ok(out)
            }
            Node::Wildcard => Ok(input
                .iter()
                .flat_map(|v| match v {
                    Value::Object(m) => m.values().cloned().collect(),
                    Value::Array(a) => a.clone(),
                    Value::String(s) => s.bytes().map(Value::from).collect(),
                    _ => Vec::new(),
                })
                .collect()),
            Node::Recursive => Ok(recursive(&input)),
            Node::Array(params) => {
                let mut out = Vec::new();
                for v in input.iter().filter(|v| !v.is_null()) {
                    let Value::Array(a) = v else {
                        return Err(format!("{} is not array or slice", go_kind(v)));
                    };
                    let len = a.len() as i64;
                    let mut p = *params;
                    if !p[0].known {
                        p[0].value = 0;
                    }
                    if p[0].value < 0 {
                        p[0].value += len;
                    }
                    if !p[1].known {
                        p[1].value = len;
                    }
                    if p[1].value < 0 || (p[1].value == 0 && p[1].derived) {
                        p[1].value += len;
                    }
                    if p[1].value == p[0].value {
                        return Ok(out);
                    }
                    if p[0].value >= len || p[0].value < 0 {
                        return Err(format!("array index out of bounds: index {}, length {len}", p[0].value));
                    }
                    if p[1].value > len || p[1].value < 0 {
                        return Err(format!("array index out of bounds: index {}, length {len}", p[1].value - 1));
                    }
                    if p[0].value > p[1].value {
                        return Err(format!(
                            "starting index {} is greater than ending index {}",
                            p[0].value, p[1].value
                        ));
                    }
                    let step = if p[2].known {
                        if p[2].value <= 0 {
                            return Err("step must be > 0".into());
                        }
                        p[2].value as usize
                    } else {
                        1
                    };
                    out.extend(a[p[0].value as usize..p[1].value as usize].iter().step_by(step).cloned());
                }
                Ok(out)
            }
            Node::Union(lists) => {
                let mut out = Vec::new();
                for l in lists {
                    out.extend(self.eval_list(input.clone(), l)?);
                }
                Ok(out)
            }
            Node::Filter { left, right, op } => {
                let mut out = Vec::new();
                for v in input.iter().filter(|v| !v.is_null()) {
                    let Value::Array(a) = v else {
                        return Err(format!("{} is not array or slice and cannot be filtered", go_kind(v)));
                    };
                    for item in a {
                        let lefts = self.eval_list(vec![item.clone()], left)?;
                        if op == "exists" {
                            if !lefts.is_empty() {
                                out.push(item.clone());
                            }
                            continue;
                        }
                        let l = match lefts.as_slice() {
                            [] => continue,
                            [l] => l,
                            _ => return Err("can only compare one element at a time".into()),
                        };
                        let rights = self.eval_list(vec![item.clone()], right)?;
                        let r = match rights.as_slice() {
                            [] => continue,
                            [r] => r,
                            _ => return Err("can only compare one element at a time".into()),
                        };
                        if compare(l, r, op)? {
                            out.push(item.clone());
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

fn recursive(input: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for v in input {
        let children: Vec<Value> = match v {
            Value::Object(m) => m.values().cloned().collect(),
            Value::Array(a) => a.clone(),
            _ => Vec::new(),
        };
        if !children.is_empty() {
            out.push(v.clone());
            out.extend(recursive(&children));
        }
    }
    out
}

fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "map[string]interface {}",
        Value::Array(_) => "[]interface {}",
        Value::String(_) => "string",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int64",
        Value::Number(_) => "float64",
        Value::Null => "<nil>",
    }
}

/// text/template's comparisons: same basic kinds only (integers with integers, floats with floats).
fn compare(l: &Value, r: &Value, op: &str) -> Result<bool, String> {
    use std::cmp::Ordering;
    let ord = match (l, r) {
        (Value::Number(a), Value::Number(b)) if a.is_i64() == b.is_i64() => {
            if a.is_i64() {
                a.as_i64().cmp(&b.as_i64())
            } else {
                a.as_f64().partial_cmp(&b.as_f64()).unwrap_or(Ordering::Equal)
            }
        }
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) if op == "==" || op == "!=" => a.cmp(b),
        _ => return Err("incompatible types for comparison".into()),
    };
    Ok(match op {
        "==" => ord == Ordering::Equal,
        "!=" => ord != Ordering::Equal,
        "<" => ord == Ordering::Less,
        ">" => ord == Ordering::Greater,
        "<=" => ord != Ordering::Greater,
        ">=" => ord != Ordering::Less,
        other => return Err(format!("unrecognized filter operator {other}")),
    })
}

/// upstream `PrintResults`: maps and lists as JSON, scalars as Go prints them, separated by spaces.
pub fn print_results(results: &[Value]) -> Result<String, String> {
    let texts: Vec<String> = results
        .iter()
        .map(|r| match r {
            Value::Object(_) | Value::Array(_) => go_json(r),
            Value::String(s) => s.clone(),
            Value::Number(n) => {
                n.as_i64().map(|i| i.to_string()).unwrap_or_else(|| go_float(n.as_f64().unwrap_or(0.0)))
            }
            Value::Bool(b) => b.to_string(),
            Value::Null => "<nil>".to_string(),
        })
        .collect();
    Ok(texts.join(" "))
}

/// apiextensions' `validateSimpleJSONPath`: printer column and selectable field paths are `.a.b.c`.
pub fn validate_simple_json_path(s: &str, path: &str) -> Vec<FieldError> {
    if s.is_empty() {
        vec![FieldError::invalid(path, Value::from(s), "must not be empty")]
    } else if !s.starts_with('.') {
        vec![FieldError::invalid(path, Value::from(s), "must be a simple json path starting with .")]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> Value {
        json!({
            "Name": "jsonpath",
            "Book": [
                {"Category": "reference", "Author": "Nigel Rees", "Title": "Sayings of the Centurey", "Price": 8.95},
                {"Category": "fiction", "Author": "Evelyn Waugh", "Title": "Sword of Honour", "Price": 12.99},
                {"Category": "fiction", "Author": "Herman Melville", "Title": "Moby Dick", "Price": 8.99},
            ],
            "Bicycle": [{"Color": "red", "Price": 19.95, "IsNew": true}, {"Color": "green", "Price": 20.01, "IsNew": false}],
            "Labels": {"engieer": 10, "web/html": 15, "k8s-app": 20},
            "Employees": {"jason": "manager", "dan": "clerk"},
        })
    }

    fn run(template: &str, data: &Value) -> String {
        JsonPath::parse(template).unwrap().execute(data).unwrap()
    }

    /// client-go jsonpath_test.go TestStructInput cases over the same data, as JSON.
    #[test]
    fn client_go_cases() {
        let s = store();
        assert_eq!(run("hello jsonpath", &s), "hello jsonpath");
        assert_eq!(run("{.Name}", &s), "jsonpath");
        assert_eq!(
            run("{.Book[2]}", &s),
            r#"{"Author":"Herman Melville","Category":"fiction","Price":8.99,"Title":"Moby Dick"}"#
        );
        assert_eq!(run("{.Book[0].Author}", &s), "Nigel Rees");
        assert_eq!(run("{.Book[-1].Author}", &s), "Herman Melville");
        assert_eq!(run("{.Book[0:2].Author}", &s), "Nigel Rees Evelyn Waugh");
        assert_eq!(run("{.Book[*].Author}", &s), "Nigel Rees Evelyn Waugh Herman Melville");
        assert_eq!(run("{.Book[0,2].Title}", &s), "Sayings of the Centurey Moby Dick");
        assert_eq!(run("{.Book[?(@.Price<10.0)].Price}", &s), "8.95 8.99");
        assert_eq!(run("{.Book[?(@.Category==\"fiction\")].Author}", &s), "Evelyn Waugh Herman Melville");
        assert_eq!(run("{.Bicycle[?(@.IsNew==true)].Color}", &s), "red");
        assert_eq!(run("{.Labels.web/html}", &s), "15");
        assert_eq!(run("{.Labels['k8s-app']}", &s), "20");
        assert_eq!(run("{..Author}", &s), "Nigel Rees Evelyn Waugh Herman Melville");
        assert_eq!(run("{.Bicycle[*].Price}", &s), "19.95 20.01");
        assert_eq!(run("{.Book[::2].Title}", &s), "Sayings of the Centurey Moby Dick");
        assert_eq!(run("{.Employees.jason}{\" \"}{.Employees.dan}", &s), "manager clerk");
        assert_eq!(JsonPath::parse("{.Book[?(@.Missing)]}").unwrap().allow_missing_keys(true).execute(&s).unwrap(), "");
        assert_eq!(
            JsonPath::parse("{.Book[5]}").unwrap().execute(&s).unwrap_err(),
            "array index out of bounds: index 5, length 3"
        );
        assert_eq!(JsonPath::parse("{.Missing}").unwrap().execute(&s).unwrap_err(), "Missing is not found");
        assert_eq!(JsonPath::parse("{.Missing}").unwrap().allow_missing_keys(true).execute(&s).unwrap(), "");
        assert_eq!(JsonPath::parse("{.Name").unwrap_err(), "unclosed action");
        assert_eq!(JsonPath::parse("{.Book[a]}").unwrap_err(), "invalid array index a");
        assert_eq!(JsonPath::parse("{.Book[0}").unwrap_err(), "unterminated array");
        assert!(JsonPath::parse("{.Book[?(@.Price<10.0)}").is_err());
    }

    #[test]
    fn find_results_per_action() {
        let s = store();
        let r = JsonPath::parse("{.Book[*].Price}").unwrap().find_results(&s).unwrap();
        assert_eq!(r, vec![vec![json!(8.95), json!(12.99), json!(8.99)]]);
        let r = JsonPath::parse("{.Labels.k8s-app}").unwrap().find_results(&s).unwrap();
        assert_eq!(r, vec![vec![json!(20)]]);
    }

    #[test]
    fn simple_paths() {
        assert!(validate_simple_json_path(".spec.replicas", "p").is_empty());
        assert_eq!(
            validate_simple_json_path("spec", "spec.versions[0].additionalPrinterColumns[0].jsonPath")[0].to_string(),
            "spec.versions[0].additionalPrinterColumns[0].jsonPath: Invalid value: \"spec\": must be a simple json path starting with ."
        );
        assert_eq!(validate_simple_json_path("", "p")[0].to_string(), "p: Invalid value: \"\": must not be empty");
    }
}
