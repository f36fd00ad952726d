//! upstream `schema/cel/validation_test.go`: TestValidationExpressions (the library table, ported case by case
//! where the interpreter supports the feature), the transition-rule cases, TestValidationExpressionsAtSchemaLevels,
//! messageExpression, reason and fieldPath, and the cost budget.

use super::*;
use serde_json::json;

fn prop(ty: &str, format: &str) -> Json {
    let mut s = json!({"type": ty});
    if !format.is_empty() {
        s["format"] = json!(format);
    }
    s
}

const INTEGER: (&str, &str) = ("integer", "");
const INT32: (&str, &str) = ("integer", "int32");
const INT64: (&str, &str) = ("integer", "int64");
const NUMBER: (&str, &str) = ("number", "");
const FLOAT: (&str, &str) = ("number", "float");
const DOUBLE: (&str, &str) = ("number", "double");
const STRING: (&str, &str) = ("string", "");
const BYTE: (&str, &str) = ("string", "byte");
const BOOLEAN: (&str, &str) = ("boolean", "");
const DURATION: (&str, &str) = ("string", "duration");
const DATE: (&str, &str) = ("string", "date");
const DATE_TIME: (&str, &str) = ("string", "date-time");

/// upstream `objs` + `schemas`: an object with `val1`..`valN`.
fn vals(types: &[(&str, &str)], values: &[Json]) -> (Json, Json) {
    let mut props = serde_json::Map::new();
    let mut obj = serde_json::Map::new();
    for (i, ((t, f), v)) in types.iter().zip(values).enumerate() {
        props.insert(format!("val{}", i + 1), prop(t, f));
        obj.insert(format!("val{}", i + 1), v.clone());
    }
    (json!({"type": "object", "properties": props}), Json::Object(obj))
}

fn list_of(items: Json) -> Json {
    json!({"type": "array", "items": items})
}

fn map_of(items: Json) -> Json {
    json!({"type": "object", "additionalProperties": items})
}

fn object(props: Json) -> Json {
    json!({"type": "object", "properties": props})
}

fn with_rules(schema: &Json, rules: Json) -> Structural {
    let mut s = schema.clone();
    s["x-kubernetes-validations"] = rules;
    Structural::new(&s).unwrap()
}

fn run(schema: &Json, rule: &str, obj: &Json, old: Option<&Json>, root: bool) -> Vec<String> {
    let s = with_rules(schema, json!([{"rule": rule}]));
    let v = Validator::build(Rules::Schema(&s), &s, root).expect("a validator");
    let mut st =
        State { remaining: RUNTIME_COST_BUDGET, deadline: Instant::now() + EVALUATION_DEADLINE, errors: vec![] };
    v.walk("root", obj, old, old.map(|o| (obj, o)), &mut st);
    st.errors.iter().map(|e| e.to_string()).collect()
}

/// One table row: every `valid` rule passes, every `errors` rule fails with a message containing the text.
fn row(name: &str, schema: &Json, obj: &Json, old: Option<&Json>, valid: &[&str], errors: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for rule in valid {
        let got = run(schema, rule, obj, old, false);
        if !got.is_empty() {
            failures.push(format!("{rule}: {got:?}"));
        }
    }
    for (rule, want) in errors {
        let got = run(schema, rule, obj, old, true);
        if got.is_empty() {
            failures.push(format!("{rule}: expected an error containing {want:?}"));
        }
        for e in &got {
            if !(e.contains("Invalid value") && e.contains(want)) {
                failures.push(format!("{rule}: {e:?} does not contain {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

/// upstream `ValsEqualThemselvesAndDataLiteral`.
fn equal_themselves(a: &str, b: &str, literal: &str) -> String {
    format!(
        "{a} == {a} && {b} == {b} && {a} == {b} && {a} == {literal} && {literal} == {a} && {b} == {literal} && {literal} == {b}"
    )
}

#[test]
fn integers() {
    let (s, o) = vals(
        &[INTEGER, INTEGER, INT32, INT32, INT64, INT64],
        &[json!(i64::MAX), json!(i64::MAX), json!(i32::MAX), json!(i32::MAX), json!(i64::MAX), json!(i64::MAX)],
    );
    row(
        "integers",
        &s,
        &o,
        None,
        &[
            &equal_themselves("self.val1", "self.val2", &i64::MAX.to_string()),
            &equal_themselves("self.val3", "self.val4", &i32::MAX.to_string()),
            &equal_themselves("self.val5", "self.val6", &i64::MAX.to_string()),
            "self.val1 == self.val6",
            "type(self.val1) == int",
            &format!("self.val3 + 1 == {} + 1", i32::MAX),
            "type(self.val3) == int",
            "type(self.val5) == int",
        ],
        &[
            ("self.val1 + 1 == 0", "integer overflow"),
            ("self.val5 + 1 == 0", "integer overflow"),
            ("1 / 0 == 1 / 0", "division by zero"),
        ],
    );
}

#[test]
fn numbers() {
    let (s, o) = vals(
        &[NUMBER, NUMBER, FLOAT, FLOAT, DOUBLE, DOUBLE, DOUBLE],
        &[
            json!(f64::MAX),
            json!(f64::MAX),
            json!(f32::MAX as f64),
            json!(f32::MAX as f64),
            json!(f64::MAX),
            json!(f64::MAX),
            json!(1),
        ],
    );
    row(
        "numbers",
        &s,
        &o,
        None,
        &[
            "self.val1 == self.val2 && self.val1 == self.val6",
            "type(self.val1) == double",
            "type(self.val3) == double",
            "type(self.val5) == double",
            "type(self.val7) == double",
            "self.val7 == 1.0",
        ],
        &[],
    );
}

#[test]
fn numeric_comparisons() {
    let (s, o) = vals(
        &[INTEGER, INTEGER, INTEGER, NUMBER, FLOAT, DOUBLE, NUMBER, FLOAT, DOUBLE],
        &[json!(5), json!(10), json!(15), json!(10.0), json!(10.0), json!(10.0), json!(10), json!(10), json!(10)],
    );
    let mut valid = vec![
        "double(5) < 10.0",
        "double(10) == 10.0",
        "double(15) > 10.0",
        "5 < int(10.0)",
        "10 == int(10.0)",
        "15 > int(10.0)",
        "double(self.val1) < 10.0",
        "double(self.val2) == 10.0",
        "double(self.val3) > 10.0",
        "5 < 10.0",
        "15 > 10.0",
        "self.val1 < 10.0",
        "self.val3 > 10.0",
    ];
    let generated: Vec<String> = (4..=9)
        .flat_map(|v| {
            [
                format!("double(self.val1) < self.val{v}"),
                format!("double(self.val2) == self.val{v}"),
                format!("double(self.val3) > self.val{v}"),
                format!("self.val1 < int(self.val{v})"),
                format!("self.val2 == int(self.val{v})"),
                format!("self.val3 > int(self.val{v})"),
                format!("self.val1 < self.val{v}"),
                format!("self.val3 > self.val{v}"),
            ]
        })
        .collect();
    valid.extend(generated.iter().map(String::as_str));
    row("numeric comparisons", &s, &o, None, &valid, &[]);
}

#[test]
fn unicode_strings() {
    let (s, o) = vals(&[STRING, STRING], &[json!("Rook takes 👑"), json!("Rook takes 👑")]);
    row(
        "unicode strings",
        &s,
        &o,
        None,
        &[
            &equal_themselves("self.val1", "self.val2", "'Rook takes 👑'"),
            "self.val1.startsWith('Rook')",
            "!self.val1.startsWith('knight')",
            "self.val1.contains('takes')",
            "!self.val1.contains('gives')",
            "self.val1.endsWith('👑')",
            "!self.val1.endsWith('pawn')",
            "self.val1.matches('^[^0-9]*$')",
            "!self.val1.matches('^[0-9]*$')",
            "type(self.val1) == string",
            "size(self.val1) == 12",
            "self.val1.charAt(3) == 'k'",
            "self.val1.indexOf('o') == 1",
            "self.val1.indexOf('o', 2) == 2",
            "self.val1.replace(' ', 'x') == 'Rookxtakesx👑'",
            "self.val1.replace(' ', 'x', 1) == 'Rookxtakes 👑'",
            "self.val1.split(' ') == ['Rook', 'takes', '👑']",
            "self.val1.split(' ', 2) == ['Rook', 'takes 👑']",
            "self.val1.substring(5) == 'takes 👑'",
            "self.val1.substring(0, 4) == 'Rook'",
            "self.val1.substring(4, 10).trim() == 'takes'",
            "self.val1.upperAscii() == 'ROOK TAKES 👑'",
            "self.val1.lowerAscii() == 'rook takes 👑'",
            "'%o %o %o'.format([7, 8, 9]) == '7 10 11'",
            "'%b %b %b'.format([7, 8, 9]) == '111 1000 1001'",
        ],
        &[("self.val1.matches(')')", "compilation failed: ERROR: <input>:1:19: invalid matches argument")],
    );
}

#[test]
fn escaped_strings_bytes_booleans() {
    let (s, o) = vals(&[STRING, STRING], &[json!("l1\nl2"), json!("l1\nl2")]);
    row(
        "escaped strings",
        &s,
        &o,
        None,
        &[&equal_themselves("self.val1", "self.val2", "'l1\\nl2'"), "self.val1 == '''l1\nl2'''"],
        &[],
    );
    let (s, o) = vals(&[BYTE, BYTE], &[json!("QUI="), json!("QUI=")]);
    row(
        "bytes",
        &s,
        &o,
        None,
        &[
            "self.val1 == self.val2",
            "self.val1 == b'AB'",
            "self.val1 == bytes('AB')",
            "self.val1 == b'\\x41\\x42'",
            "type(self.val1) == bytes",
            "size(self.val1) == 2",
        ],
        &[],
    );
    let (s, o) = vals(&[BOOLEAN, BOOLEAN, BOOLEAN, BOOLEAN], &[json!(true), json!(true), json!(false), json!(false)]);
    row(
        "booleans",
        &s,
        &o,
        None,
        &[
            &equal_themselves("self.val1", "self.val2", "true"),
            &equal_themselves("self.val3", "self.val4", "false"),
            "self.val1 != self.val4",
            "type(self.val1) == bool",
        ],
        &[],
    );
}

#[test]
fn durations_dates_and_timestamps() {
    let (s, o) = vals(&[DURATION, DURATION], &[json!("1h2m3s4ms"), json!("1h2m3s4ms")]);
    row(
        "duration format",
        &s,
        &o,
        None,
        &[
            &equal_themselves("self.val1", "self.val2", "duration('1h2m3s4ms')"),
            "self.val1 == duration('1h2m') + duration('3s4ms')",
            "self.val1.getHours() == 1",
            "self.val1.getMinutes() == 62",
            "self.val1.getSeconds() == 3723",
            "self.val1.getMilliseconds() == 3723004",
            "type(self.val1) == google.protobuf.Duration",
        ],
        &[
            ("duration('1')", "compilation failed: ERROR: <input>:1:10: invalid duration argument"),
            ("duration('1d')", "compilation failed: ERROR: <input>:1:10: invalid duration argument"),
        ],
    );
    let (s, o) = vals(&[DATE, DATE], &[json!("1997-07-16"), json!("1997-07-16")]);
    row(
        "date format",
        &s,
        &o,
        None,
        &[
            &equal_themselves("self.val1", "self.val2", "timestamp('1997-07-16T00:00:00.000Z')"),
            "self.val1.getDate() == 16",
            "self.val1.getMonth() == 06",
            "self.val1.getFullYear() == 1997",
            "type(self.val1) == google.protobuf.Timestamp",
        ],
        &[],
    );
    let (s, o) = vals(
        &[DATE_TIME, DATE_TIME],
        &[json!("2011-08-18T19:03:37.010000000+01:00"), json!("2011-08-18T19:03:37.010000000+01:00")],
    );
    row(
        "date-time format",
        &s,
        &o,
        None,
        &[
            &equal_themselves("self.val1", "self.val2", "timestamp('2011-08-18T19:03:37.010+01:00')"),
            "self.val1 == timestamp('2011-08-18T00:00:00.000+01:00') + duration('19h3m37s10ms')",
            "type(self.val1) == google.protobuf.Timestamp",
        ],
        &[
            ("timestamp('1000-00-00T00:00:00Z')", "compilation failed: ERROR: <input>:1:11: invalid timestamp"),
            ("timestamp('1000-01-01T00:00:00ZZ')", "compilation failed: ERROR: <input>:1:11: invalid timestamp"),
            ("timestamp(-62135596801)", "compilation failed: ERROR: <input>:1:11: invalid timestamp"),
        ],
    );
}

#[test]
fn enums_and_conversions() {
    let s =
        object(json!({"enumStr": {"type": "string", "enum": ["Pending", "Available", "Bound", "Released", "Failed"]}}));
    row(
        "enums",
        &s,
        &json!({"enumStr": "Pending"}),
        None,
        &["self.enumStr == 'Pending'", "self.enumStr in ['Pending', 'Available']"],
        &[],
    );
    let (s, o) = vals(
        &[INTEGER, NUMBER, NUMBER, NUMBER, BOOLEAN, STRING, BYTE, STRING, DURATION, STRING, DATE_TIME, STRING, DATE],
        &[
            json!(10),
            json!(10.0),
            json!(10.49),
            json!(10.5),
            json!(true),
            json!("10"),
            json!("MTA="),
            json!("3723.004s"),
            json!("1h2m3s4ms"),
            json!("2011-08-18T19:03:37.01+01:00"),
            json!("2011-08-18T19:03:37.01+01:00"),
            json!("2011-08-18T00:00:00Z"),
            json!("2011-08-18"),
        ],
    );
    row(
        "conversions",
        &s,
        &o,
        None,
        &[
            "int(self.val2) == self.val1",
            "int(self.val3) == self.val1",
            "int(self.val4) == self.val1",
            "int(self.val6) == self.val1",
            "double(self.val1) == self.val2",
            "double(self.val6) == self.val2",
            "bytes(self.val6) == self.val7",
            "string(self.val1) == self.val6",
            "string(self.val2) == '10'",
            "string(self.val3) == '10.49'",
            "string(self.val4) == '10.5'",
            "string(self.val7) == self.val6",
            "duration(self.val8) == self.val9",
            "timestamp(self.val10) == self.val11",
            "timestamp(self.val12) == self.val13",
        ],
        &[],
    );
}

#[test]
fn lists_sets_and_maps() {
    let (s, o) = vals(&[("array", ""), ("array", "")], &[json!([1, 2, 3]), json!([1, 2, 3])]);
    let s = {
        let mut s = s;
        s["properties"]["val1"]["items"] = json!({"type": "integer"});
        s["properties"]["val2"]["items"] = json!({"type": "integer"});
        s
    };
    row(
        "lists",
        &s,
        &o,
        None,
        &[
            &equal_themselves("self.val1", "self.val2", "[1, 2, 3]"),
            "1 in self.val1",
            "self.val2[0] in self.val1",
            "!(0 in self.val1)",
            "self.val1 + self.val2 == [1, 2, 3, 1, 2, 3]",
            "self.val1 + [4, 5] == [1, 2, 3, 4, 5]",
        ],
        &[],
    );
    let s = object(json!({"val1": list_of(json!({"type": "string"}))}));
    row(
        "string lists",
        &s,
        &json!({"val1": ["a", "b", "c"]}),
        None,
        &[
            "self.val1.join('-') == 'a-b-c'",
            "['a', 'b', 'c'].join('-') == 'a-b-c'",
            "self.val1.join() == 'abc'",
            "['a', 'b', 'c'].join() == 'abc'",
        ],
        &[],
    );
    row(
        "sets",
        &s,
        &json!({"val1": ["a", "b", "c"]}),
        None,
        &[
            "'a' in self.val1",
            "!('x' in self.val1)",
            "sets.contains(['a', 'b'], [])",
            "sets.contains(['a', 'b'], ['b'])",
            "!sets.contains(['a', 'b'], ['c'])",
            "sets.equivalent([], [])",
            "sets.equivalent(['c', 'b', 'a'], ['b', 'c', 'a'])",
            "!sets.equivalent(['a', 'b'], ['b', 'c'])",
            "sets.intersects(['a', 'b'], ['b', 'c'])",
            "!sets.intersects([], [])",
            "!sets.intersects(['a', 'b'], [])",
            "!sets.intersects(['a', 'b'], ['c', 'd'])",
            "sets.contains([1, 2], [2])",
            "sets.contains([true, false], [false])",
            "sets.contains([1.25, 1.5], [1.5])",
            "sets.contains([{'a': 1}, {'b': 2}], [{'b': 2}])",
            "sets.contains([[1, 2], [3, 4]], [[3, 4]])",
            "sets.contains([duration('1h'), duration('2h')], [duration('2h')])",
            "sets.equivalent([1, 2], [1, 2])",
            "sets.equivalent([[1, 2], [3, 4]], [[1, 2], [3, 4]])",
            "sets.intersects([1, 2], [2])",
            "sets.intersects([{'a': 1}, {'b': 2}], [{'b': 2}])",
        ],
        &[],
    );
    let s = object(json!({"val1": map_of(json!({"type": "string"})), "val2": map_of(json!({"type": "string"}))}));
    row(
        "maps",
        &s,
        &json!({"val1": {"k1": "a", "k2": "b"}, "val2": {"k2": "b", "k1": "a"}}),
        None,
        &["self.val1 == self.val2", "'k1' in self.val1", "!('k3' in self.val1)", "self.val1 == {'k1': 'a', 'k2': 'b'}"],
        &[],
    );
}

#[test]
fn object_map_and_list_access() {
    let s = object(json!({
        "a": object(json!({"b": {"type": "integer"}, "c": {"type": "integer"}, "d": {"type": "integer", "nullable": true}})),
        "a1": object(json!({"b1": object(json!({"c1": {"type": "integer"}})), "d2": object(json!({"e2": {"type": "integer"}}))})),
    }));
    let o = json!({"a": {"b": 1, "d": null}, "a1": {"b1": {"c1": 4}}, "a3": {}});
    row(
        "object access",
        &s,
        &o,
        None,
        &[
            "has(self.a.b)",
            "!has(self.a.c)",
            "!has(self.a.d)",
            "has(self.a1.b1.c1)",
            "!(has(self.a1.d2) && has(self.a1.d2.e2))",
            "!has(self.a1.d2)",
        ],
        &[("has(self.a.z)", "undefined field 'z'"), ("has(self.a1.d2.e2)", "no such key: d2")],
    );

    let s = object(json!({"val": map_of(json!({"type": "integer"}))}));
    row(
        "map access",
        &s,
        &json!({"val": {"b": 1, "d": 2}}),
        None,
        &[
            "!('a' in self.val)",
            "'b' in self.val",
            "!('c' in self.val)",
            "'d' in self.val",
            "!has(self.val.a)",
            "has(self.val.b)",
            "!has(self.val.c)",
            "has(self.val.d)",
            "self.val.all(k, self.val[k] > 0)",
            "self.val.exists(k, self.val[k] > 1)",
            "self.val.exists_one(k, self.val[k] == 2)",
            "!self.val.exists(k, self.val[k] > 2)",
            "!self.val.exists_one(k, self.val[k] > 0)",
            "size(self.val) == 2",
            "self.val.map(k, self.val[k]).exists(v, v == 1)",
            "size(self.val.filter(k, self.val[k] > 1)) == 1",
        ],
        &[("self.val['c'] == 1", "no such key: c")],
    );

    let s = object(
        json!({"listMap": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
        "items": object(json!({"k": {"type": "string"}, "v": {"type": "string"}, "v2": {"type": "string"}}))}}),
    );
    let o = json!({"listMap": [{"k": "a1", "v": "b1"}, {"k": "a2", "v": "b2"}, {"k": "a3", "v": "b3", "v2": "z"}]});
    row(
        "listMap access",
        &s,
        &o,
        None,
        &[
            "has(self.listMap[0].v)",
            "self.listMap.all(m, m.k.startsWith('a'))",
            "self.listMap.all(m, !has(m.v2) || m.v2 == 'z')",
            "self.listMap.exists(m, m.k.endsWith('1'))",
            "self.listMap.exists_one(m, m.k == 'a3')",
            "!self.listMap.all(m, m.k.endsWith('1'))",
            "!self.listMap.exists(m, m.v == 'x')",
            "!self.listMap.exists_one(m, m.k.startsWith('a'))",
            "size(self.listMap.filter(m, m.k == 'a1')) == 1",
            "self.listMap.exists(m, m.k == 'a1' && m.v == 'b1')",
            "self.listMap.map(m, m.v).exists(v, v == 'b1')",
            "self.listMap.exists(m, has(m.v2) && m.v2 == 'z')",
            "!self.listMap.all(m, has(m.v2) && m.v2 != 'z')",
            "self.listMap.exists_one(m, has(m.v2) && m.v2 == 'z')",
            "self.listMap.filter(m, has(m.v2) && m.v2 == 'z').size() == 1",
            "self.listMap.map(m, has(m.v2) && m.v2 == 'z', m.v2).size() == 1",
            "self.listMap.filter(m, has(m.v2) && m.v2 == 'z').map(m, m.v2).size() == 1",
        ],
        &[
            ("self.listMap.all(m, m.v2 == 'z')", "no such key: v2"),
            ("self.listMap.exists_one(m, m.v2 == 'z')", "no such key: v2"),
            ("self.listMap.filter(m, m.v2 == 'z').size() == 1", "no such key: v2"),
            ("self.listMap.map(m, m.v2).size() == 1", "no such key: v2"),
            ("self.listMap.map(m, m.v2 == 'z', m.v2).size() == 1", "no such key: v2"),
        ],
    );

    let s = object(json!({"array": list_of(json!({"type": "integer"}))}));
    row(
        "list access",
        &s,
        &json!({"array": [1, 1, 2, 2, 3, 3, 4, 5]}),
        None,
        &[
            "2 in self.array",
            "self.array.all(e, e > 0)",
            "self.array.exists(e, e > 2)",
            "self.array.exists_one(e, e > 4)",
            "!self.array.all(e, e < 2)",
            "!self.array.exists(e, e < 0)",
            "!self.array.exists_one(e, e == 2)",
            "self.array.all(e, e < 100)",
            "size(self.array.filter(e, e%2 == 0)) == 3",
            "self.array.map(e, e * 20).filter(e, e > 50).exists(e, e == 60)",
            "size(self.array) == 8",
        ],
        &[("self.array[100] == 0", "index out of bounds: 100")],
    );
}

#[test]
fn type_and_object_meta_and_embedded_resources() {
    let o = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "foo", "generateName": "pickItForMe", "namespace": "xyz"},
                   "spec": {"field1": "a"}});
    let s = object(json!({"kind": {"type": "string"}, "apiVersion": {"type": "string"},
        "metadata": object(json!({"name": {"type": "string"}, "generateName": {"type": "string"}}))}));
    let valid = [
        "self.kind == 'Pod'",
        "self.apiVersion == 'v1'",
        "self.metadata.name == 'foo'",
        "self.metadata.generateName == 'pickItForMe'",
    ];
    row(
        "typemeta and objectmeta access specified",
        &s,
        &o,
        None,
        &valid,
        &[("has(self.metadata.namespace)", "undefined field 'namespace'")],
    );
    // Not specified: only at a resource root.
    let s = object(json!({"spec": object(json!({"field1": {"type": "string"}}))}));
    for rule in valid.iter().chain(&["self.spec.field1 == 'a'"]) {
        assert!(run(&s, rule, &o, None, true).is_empty(), "{rule}");
    }
    assert!(run(&s, "has(self.metadata.namespace)", &o, None, true)[0].contains("undefined field 'namespace'"));

    let emb = json!({"embedded": o.clone()});
    let s = object(json!({"embedded": {"type": "object", "x-kubernetes-embedded-resource": true}}));
    row(
        "embedded object",
        &s,
        &emb,
        None,
        &[
            "self.embedded.kind == 'Pod'",
            "self.embedded.apiVersion == 'v1'",
            "self.embedded.metadata.name == 'foo'",
            "self.embedded.metadata.generateName == 'pickItForMe'",
        ],
        &[
            ("has(self.embedded.metadata.namespace)", "undefined field 'namespace'"),
            ("has(self.embedded.spec)", "undefined field 'spec'"),
        ],
    );
    let s = object(json!({"embedded": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {
        "kind": {"type": "string"}, "apiVersion": {"type": "string"},
        "metadata": object(json!({"name": {"type": "string"}, "generateName": {"type": "string"}, "namespace": {"type": "string"}})),
        "spec": object(json!({"if": {"type": "string"}}))}}}));
    let o2 = json!({"embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "foo", "generateName": "g", "namespace": "reserved_keyword_namespace"},
                    "spec": {"if": "reserved_keyword_if"}}});
    row(
        "embedded object with usage of reserved keywords",
        &s,
        &o2,
        None,
        &[
            "has(self.embedded.metadata.namespace)",
            "self.embedded.metadata.namespace == 'reserved_keyword_namespace'",
            "has(self.embedded.spec.if)",
            "self.embedded.spec.if == 'reserved_keyword_if'",
        ],
        &[],
    );
    let s = object(
        json!({"embedded": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}),
    );
    row(
        "embedded object with preserve unknown",
        &s,
        &emb,
        None,
        &["self.embedded.kind == 'Pod'", "has(self.embedded)"],
        &[("has(self.embedded.spec)", "undefined field 'spec'")],
    );
}

#[test]
fn int_or_string_and_preserve_unknown_fields() {
    let ios = json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]});
    let s = object(json!({"something": ios}));
    row(
        "string in intOrString",
        &s,
        &json!({"something": "25%"}),
        None,
        &[
            "self.something == '25%'",
            "self.something != 1",
            "self.something == 1 || self.something == '25%'",
            "self.something == '25%' || self.something == 1",
            "type(self.something) == string && self.something == '25%'",
            "type(self.something) == int ? self.something == 1 : self.something == '25%'",
            "self.something != ['anything']",
        ],
        &[],
    );
    row(
        "int in intOrString",
        &s,
        &json!({"something": 1}),
        None,
        &[
            "self.something == 1",
            "self.something != 'some string'",
            "self.something == 1 || self.something == '25%'",
            "type(self.something) == int && self.something == 1",
            "type(self.something) == int ? self.something == 1 : self.something == '25%'",
        ],
        &[],
    );
    let mut nullable = ios.clone();
    nullable["nullable"] = json!(true);
    row(
        "null in intOrString",
        &object(json!({"something": nullable})),
        &json!({"something": null}),
        None,
        &["!has(self.something)"],
        &[("type(self.something) == int", "no such key")],
    );
    let s = object(json!({"min": ios, "current": {"type": "integer"}, "available": {"type": "integer"}}));
    row(
        "percent comparison using intOrString",
        &s,
        &json!({"min": "50%", "current": 5, "available": 10}),
        None,
        &[
            r"type(self.min) == string && self.min.matches(r'(\d+(\.\d+)?%)')",
            "type(self.min) == int ? self.current <= self.min : double(self.current) / double(self.available) >= double(self.min.replace('%', '')) / 100.0",
        ],
        &[],
    );

    let unknown = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let any = json!({"x-kubernetes-preserve-unknown-fields": true});
    let s = object(json!({"withUnknown": unknown, "withUnknownList": list_of(unknown.clone()),
        "anyvalList": list_of(any.clone()), "anyvalMap": map_of(any.clone()), "anyvalField1": any}));
    let o = json!({"withUnknown": {"field1": "a", "field2": "b"},
        "withUnknownList": [{"field1": "a", "field2": "b"}, {"field1": "x", "field2": "y"}, {"field1": "x", "field2": "y"}, {}, {}],
        "anyvalList": ["a", 2], "anyvalMap": {"k": "1"}, "anyvalField1": 1});
    row(
        "preserve unknown fields",
        &s,
        &o,
        None,
        &[
            "has(self.withUnknown)",
            "self.withUnknownList.size() == 5",
            "self.withUnknownList[0] != self.withUnknownList[1]",
            "self.withUnknownList[1] == self.withUnknownList[2]",
            "self.withUnknownList[3] == self.withUnknownList[4]",
        ],
        &[
            ("has(self.withUnknown.field1)", "undefined field 'field1'"),
            ("has(self.anyvalList)", "undefined field 'anyvalList'"),
            ("has(self.anyvalMap)", "undefined field 'anyvalMap'"),
            ("has(self.anyvalField1)", "undefined field 'anyvalField1'"),
        ],
    );
}

#[test]
fn field_nullability_and_null_values_in_containers() {
    let s =
        object(json!({"unsetPlainStr": {"type": "string"}, "unsetNullableStr": {"type": "string", "nullable": true},
        "setPlainStr": {"type": "string"}, "setNullableStr": {"type": "string", "nullable": true},
        "setToNullNullableStr": {"type": "string", "nullable": true}}));
    row(
        "field nullability",
        &s,
        &json!({"setPlainStr": "v1", "setNullableStr": "v3", "setToNullNullableStr": null}),
        None,
        &[
            "!has(self.unsetPlainStr)",
            "!has(self.unsetNullableStr)",
            "has(self.setPlainStr) && self.setPlainStr == 'v1'",
            "has(self.setNullableStr) && self.setNullableStr == 'v3'",
            "type(self.setNullableStr) != null_type",
            "!has(self.setToNullNullableStr)",
        ],
        &[],
    );
    let ns = json!({"type": "string", "nullable": true});
    let s = object(json!({"m": map_of(ns.clone()), "l": list_of(ns.clone()),
        "s": {"type": "array", "x-kubernetes-list-type": "set", "items": ns}}));
    row(
        "null values in container types",
        &s,
        &json!({"m": {"a": null, "b": "not-nil"}, "l": [null, "not-nil"], "s": [null, "not-nil"]}),
        None,
        &[
            "self.m.size() == 2",
            "'a' in self.m",
            "type(self.m['a']) == null_type",
            "self.l.size() == 2",
            "type(self.l[0]) == null_type",
            "self.s.size() == 2",
            "type(self.s[0]) == null_type",
        ],
        &[],
    );
}

#[test]
fn escaping() {
    let names = [
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
    let mut props = serde_json::Map::new();
    let mut obj = serde_json::Map::new();
    for (i, n) in names.iter().enumerate() {
        props.insert(n.to_string(), json!({"type": "integer"}));
        obj.insert(n.to_string(), json!(i + 1));
    }
    for (n, v) in [
        ("int", 101),
        ("uint", 102),
        ("double", 103),
        ("bool", 104),
        ("string", 105),
        ("bytes", 106),
        ("list", 107),
        ("map", 108),
        ("null_type", 109),
        ("type", 110),
        ("self", 201),
        ("getDate", 202),
        ("all", 203),
        ("_true", 301),
        ("dot.dot", 401),
        ("dash-dash", 402),
        ("slash/slash", 403),
        ("underscore_underscore", 404),
        ("doubleunderscore__doubleunderscore", 405),
    ] {
        props.insert(n.to_string(), json!({"type": "integer"}));
        obj.insert(n.to_string(), json!(v));
    }
    props.insert("size".into(), json!({"type": "string"}));
    obj.insert("size".into(), json!("204"));
    let s = json!({"type": "object", "properties": props});
    let o = Json::Object(obj);
    let mut valid: Vec<String> = names.iter().enumerate().map(|(i, n)| format!("self.__{n}__ == {}", i + 1)).collect();
    valid.extend(
        [
            "self.int == 101",
            "self.uint == 102",
            "self.double == 103",
            "self.bool == 104",
            "self.string == 105",
            "self.bytes == 106",
            "self.list == 107",
            "self.map == 108",
            "self.null_type == 109",
            "self.type == 110",
            "self.self == 201",
            "self.getDate == 202",
            "self.all == 203",
            "self.size == '204'",
            "self._true == 301",
            "self.__true__ != 301",
            "self.dot__dot__dot == 401",
            "self.dash__dash__dash == 402",
            "self.slash__slash__slash == 403",
            "self.underscore_underscore == 404",
            "self.doubleunderscore__underscores__doubleunderscore == 405",
        ]
        .map(String::from),
    );
    let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
    row(
        "escaping",
        &s,
        &o,
        None,
        &valid,
        &[("self.true == 1", "Syntax error"), ("self.__illegal__ == 301", "undefined field '__illegal__'")],
    );

    let s = object(json!({"m": map_of(json!({"type": "integer"}))}));
    row(
        "map keys are not escaped",
        &s,
        &json!({"m": {"@": 1, "9": 2, "int": 3, "./-": 4, "👑": 5}}),
        None,
        &["self.m['@'] == 1", "self.m['9'] == 2", "self.m['int'] == 3", "self.m['./-'] == 4", "self.m['👑'] == 5"],
        &[],
    );
}

#[test]
fn container_type_composition() {
    let kv = |k: &str, v: &str| object(json!({k: {"type": "string"}, v: {"type": "string"}}));
    let list_map = |k: &str, v: &str| json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [k], "items": kv(k, v)});
    let s = object(json!({
        "obj": object(json!({"field": {"type": "string"}})),
        "mapOfMap": map_of(map_of(json!({"type": "string"}))),
        "mapOfObj": map_of(object(json!({"field2": {"type": "string"}}))),
        "mapOfListMap": map_of(list_map("k", "v")),
        "mapOfList": map_of(list_of(json!({"type": "string"}))),
        "listMapOfObj": list_map("k2", "v2"),
        "listOfMap": list_of(map_of(json!({"type": "string"}))),
        "listOfObj": list_of(object(json!({"field3": {"type": "string"}}))),
        "listOfListMap": list_of(list_map("k3", "v3")),
    }));
    let o = json!({"obj": {"field": "a"}, "mapOfMap": {"x": {"y": "b"}}, "mapOfObj": {"k": {"field2": "c"}},
        "mapOfListMap": {"o": [{"k": "1", "v": "d"}]}, "mapOfList": {"l": ["e"]}, "listMapOfObj": [{"k2": "2", "v2": "f"}],
        "listOfMap": [{"z": "g"}], "listOfObj": [{"field3": "h"}], "listOfListMap": [[{"k3": "3", "v3": "i"}]]});
    row(
        "container type composition",
        &s,
        &o,
        None,
        &[
            "self.obj.field == 'a'",
            "self.mapOfMap['x']['y'] == 'b'",
            "self.mapOfObj['k'].field2 == 'c'",
            "self.mapOfListMap['o'].exists(e, e.k == '1' && e.v == 'd')",
            "self.mapOfList['l'][0] == 'e'",
            "self.listMapOfObj.exists(e, e.k2 == '2' && e.v2 == 'f')",
            "self.listOfMap[0]['z'] == 'g'",
            "self.listOfObj[0].field3 == 'h'",
            "self.listOfListMap[0].exists(e, e.k3 == '3' && e.v3 == 'i')",
        ],
        &[],
    );
}

#[test]
fn stdlib_list_regex_url_quantity_ip() {
    let ints = list_of(json!({"type": "integer"}));
    let doubles = list_of(json!({"type": "number", "format": "double"}));
    let strings = list_of(json!({"type": "string"}));
    let durations = list_of(json!({"type": "string", "format": "duration"}));
    let s = object(
        json!({"ints": ints, "unsortedInts": ints, "emptyInts": ints, "doubles": doubles, "unsortedDoubles": doubles,
        "intBackedDoubles": doubles, "strings": strings, "unsortedStrings": strings, "emptyStrings": strings,
        "durations": durations, "unsortedDurations": durations,
        "objs": list_of(object(json!({"f1": {"type": "string"}, "f2": {"type": "string"}})))}),
    );
    let o = json!({"ints": [1, 2, 2, 3], "unsortedInts": [2, 1], "emptyInts": [], "doubles": [1.0, 2.0, 2.0, 3.0],
        "unsortedDoubles": [2.0, 1.0], "intBackedDoubles": [1, 2, 2, 3], "strings": ["a", "b", "b", "c"],
        "unsortedStrings": ["b", "a"], "emptyStrings": [], "durations": ["1s", "1m", "1m", "1h"], "unsortedDurations": ["1m", "1s"],
        "objs": [{"f1": "a", "f2": "a"}, {"f1": "a", "f2": "b"}, {"f1": "a", "f2": "b"}, {"f1": "a", "f2": "c"}]});
    row(
        "stdlib list functions",
        &s,
        &o,
        None,
        &[
            "self.ints.sum() == 8",
            "self.ints.min() == 1",
            "self.ints.max() == 3",
            "self.emptyInts.sum() == 0",
            "self.ints.isSorted()",
            "self.emptyInts.isSorted()",
            "self.unsortedInts.isSorted() == false",
            "self.ints.indexOf(2) == 1",
            "self.ints.lastIndexOf(2) == 2",
            "self.ints.indexOf(10) == -1",
            "self.ints.lastIndexOf(10) == -1",
            "self.doubles.sum() == 8.0",
            "self.doubles.min() == 1.0",
            "self.doubles.max() == 3.0",
            "self.doubles.isSorted()",
            "self.unsortedDoubles.isSorted() == false",
            "self.doubles.indexOf(2.0) == 1",
            "self.doubles.lastIndexOf(2.0) == 2",
            "self.intBackedDoubles.sum() == 8.0",
            "self.intBackedDoubles.indexOf(2.0) == 1",
            "self.durations.min() == duration('1s')",
            "self.durations.max() == duration('1h')",
            "self.durations.isSorted()",
            "self.unsortedDurations.isSorted() == false",
            "self.durations.indexOf(duration('1m')) == 1",
            "self.strings.min() == 'a'",
            "self.strings.max() == 'c'",
            "self.strings.isSorted()",
            "self.emptyStrings.isSorted()",
            "self.unsortedStrings.isSorted() == false",
            "self.strings.indexOf('b') == 1",
            "self.strings.lastIndexOf('b') == 2",
            "self.strings.indexOf('x') == -1",
            "[[1], [2]].indexOf([1]) == 0",
            "[{'a': 1}, {'b': 2}].lastIndexOf({'b': 2}) == 1",
            "self.objs.indexOf(self.objs[1]) == 1",
            "self.objs.lastIndexOf(self.objs[1]) == 2",
            "([0] + self.emptyInts).min() == 0",
            "dyn([]).sum() == 0",
            "dyn([1, 2]).sum() == 3",
            "dyn([1.0, 2.0]).sum() == 3.0",
            "[].sum() == 0",
        ],
        &[
            ("self.emptyInts.min() == 1", "min on empty list"),
            ("self.emptyInts.max() == 3", "max on empty list"),
            ("self.emptyStrings.min() == 'a'", "min on empty list"),
        ],
    );

    let s = object(json!({"str": {"type": "string"}}));
    row(
        "stdlib regex functions",
        &s,
        &json!({"str": "this is a 123 string 456"}),
        None,
        &[
            "self.str.find('[0-9]+') == '123'",
            "self.str.find('[0-9]+') != '456'",
            "self.str.find('xyz') == ''",
            "self.str.findAll('[0-9]+') == ['123', '456']",
            "self.str.findAll('[0-9]+', 0) == []",
            "self.str.findAll('[0-9]+', 1) == ['123']",
            "self.str.findAll('[0-9]+', 2) == ['123', '456']",
            "self.str.findAll('[0-9]+', 3) == ['123', '456']",
            "self.str.findAll('[0-9]+', -1) == ['123', '456']",
            "self.str.findAll('xyz') == []",
            "self.str.findAll('xyz', 1) == []",
        ],
        &[
            ("self.str.find(')') == ''", "compile error: program instantiation failed: error parsing regexp"),
            ("self.str.findAll(')') == []", "compile error: program instantiation failed: error parsing regexp"),
            ("self.str.matches('x++')", "invalid matches argument"),
        ],
    );

    let s = object(json!({"url": {"type": "string"}}));
    row(
        "URL parsing",
        &s,
        &json!({"url": "https://user:pass@kubernetes.io:80/docs/home?k1=a&k2=b&k2=c#anchor"}),
        None,
        &[
            "url('/path').getScheme() == ''",
            "url('https://example.com/').getScheme() == 'https'",
            "url('https://example.com:80/').getHost() == 'example.com:80'",
            "url('https://example.com/').getHost() == 'example.com'",
            "url('https://[::1]:80/').getHost() == '[::1]:80'",
            "url('https://[::1]/').getHost() == '[::1]'",
            "url('https://example.com:80/').getHostname() == 'example.com'",
            "url('https://127.0.0.1/').getHostname() == '127.0.0.1'",
            "url('https://[::1]/').getHostname() == '::1'",
            "url('https://example.com:80/').getPort() == '80'",
            "url('https://example.com/').getPort() == ''",
            "url('/path').getPort() == ''",
            "url('https://example.com/path').getEscapedPath() == '/path'",
            "url('https://example.com/with space/').getEscapedPath() == '/with%20space/'",
            "url('https://example.com/path?k1=a&k2=b&k2=c').getQuery() == { 'k1': ['a'], 'k2': ['b', 'c']}",
            "url('https://example.com/path?key with spaces=value with spaces').getQuery() == { 'key with spaces': ['value with spaces']}",
            "url('https://example.com/path?').getQuery() == {}",
            "url('https://example.com/path').getQuery() == {}",
            "url(self.url).getScheme() == 'https'",
            "url(self.url).getHost() == 'kubernetes.io:80'",
            "url(self.url).getHostname() == 'kubernetes.io'",
            "url(self.url).getPort() == '80'",
            "url(self.url).getEscapedPath() == '/docs/home'",
            "url(self.url).getQuery() == {'k1': ['a'], 'k2': ['b', 'c']}",
            "isURL('https://user:pass@example.com:80/path?query=val#fragment')",
            "isURL('/path') == true",
            "isURL('https://a:b:c/') == false",
            "isURL('../relative-path') == false",
        ],
        &[],
    );

    let (s, o) = vals(&[STRING, STRING], &[json!("20"), json!("200M")]);
    row(
        "quantity",
        &s,
        &o,
        None,
        &[
            "isQuantity(self.val1)",
            "isQuantity(self.val2)",
            "isQuantity(\"20Mi\")",
            "quantity(self.val2) == quantity(\"0.2G\") && quantity(\"0.2G\") == quantity(\"200M\")",
            "quantity(\"2M\") == quantity(\"0.002G\") && quantity(\"2000k\") == quantity(\"2M\") && quantity(\"0.002G\") == quantity(\"2000k\")",
            "quantity(self.val1).isLessThan(quantity(\"100M\"))",
            "quantity(self.val2).isGreaterThan(quantity(\"50M\"))",
            "quantity(self.val2).compareTo(quantity(\"0.2G\")) == 0",
            "quantity(\"50k\").add(quantity(self.val1)) == quantity(\"50.02k\")",
            "quantity(\"50k\").sub(quantity(self.val1)) == quantity(\"49980\")",
            "quantity(self.val1).isInteger()",
        ],
        &[],
    );
    row(
        "IP and CIDR",
        &s,
        &o,
        None,
        &[
            "isIP(\"192.168.0.1\")",
            "ip.isCanonical(\"127.0.0.1\")",
            "ip(\"192.168.0.1\").family() > 0",
            "ip(\"0.0.0.0\").isUnspecified()",
            "ip(\"127.0.0.1\").isLoopback()",
            "ip(\"224.0.0.1\").isLinkLocalMulticast()",
            "ip(\"192.168.0.1\").isGlobalUnicast()",
            "cidr(\"192.168.0.0/24\").containsIP(ip(\"192.168.0.1\"))",
            "cidr(\"192.168.0.0/24\").containsCIDR(\"192.168.0.0/25\")",
            "cidr(\"2001:db8::/32\").containsCIDR(cidr(\"2001:db8::/33\"))",
            "cidr('192.168.0.0/24') == cidr('192.168.0.0/24').masked()",
            "cidr('192.168.0.0/16').prefixLength() == 16",
            "cidr('::1/128').ip().family() == 6",
        ],
        &[],
    );
    row(
        "authorizer is not supported for CRD Validation Rules",
        &object(json!({})),
        &json!({}),
        None,
        &[],
        &[("authorizer.path('/healthz').check('get').allowed()", "undeclared reference to 'authorizer'")],
    );
}

#[test]
fn optionals() {
    let s = object(json!({"presentObj": object(json!({"presentStr": {"type": "string"}})),
        "absentObj": object(json!({"absentStr": {"type": "string"}})), "m": map_of(json!({"type": "string"})),
        "l": list_of(json!({"type": "string"}))}));
    row(
        "optionals",
        &s,
        &json!({"presentObj": {"presentStr": "value"}, "m": {"k": "v"}, "l": ["a"]}),
        None,
        &[
            "self.presentObj.?presentStr.orValue('') == 'value'",
            "self.presentObj.?presentStr.hasValue() == true",
            "self.m[?'k'].orValue('') == 'v'",
            "self.m[?'k'].hasValue() == true",
            "self.m[?'x'].orValue('nope') == 'nope'",
            "self.m[?'x'].hasValue() == false",
            "self.l[?0].orValue('') == 'a'",
            "self.l[?0].hasValue() == true",
            "self.l[?1].orValue('nope') == 'nope'",
            "self.l[?1].hasValue() == false",
            "optional.ofNonZeroValue(1).hasValue()",
            "optional.ofNonZeroValue('a').hasValue()",
            "!optional.ofNonZeroValue(0).hasValue()",
            "!optional.ofNonZeroValue('').hasValue()",
        ],
        &[("self.absentObj.?absentStr == optional.none()", "no such key: absentObj")],
    );
}

#[test]
fn transition_rules() {
    let s = object(json!({"v": {"type": "string"}}));
    row(
        "transition rules",
        &s,
        &json!({"v": "new"}),
        Some(&json!({"v": "old"})),
        &["oldSelf.v != self.v", "oldSelf.v == 'old' && self.v == 'new'"],
        &[],
    );
    // Skipped without an old value: no cost spent, no error.
    for (schema, obj, rule) in [
        (json!({"type": "string"}), json!("exists"), "oldSelf == self"),
        (list_of(json!({"type": "string"})), json!([]), "oldSelf == self"),
        (object(json!({"f": {"type": "string"}})), json!({"f": "exists"}), "oldSelf.f == self.f"),
    ] {
        let s = with_rules(&schema, json!([{"rule": rule}]));
        let v = Validator::build(Rules::Schema(&s), &s, false).unwrap();
        let mut st = State { remaining: 100, deadline: Instant::now() + EVALUATION_DEADLINE, errors: vec![] };
        assert!(v.walk("", &obj, None, None, &mut st));
        assert_eq!((st.remaining, st.errors.len()), (100, 0), "{rule}");
    }
    // An immutable field: refused on change, not on create; optionalOldSelf runs on create with oldSelf none.
    let s = object(json!({"spec": {"type": "object", "properties": {"name": {"type": "string"}},
        "x-kubernetes-validations": [
            {"rule": "self.name == oldSelf.name", "message": "name is immutable"},
            {"rule": "!oldSelf.hasValue() || oldSelf.value().name == 'keep' || self.name != 'forbidden'", "optionalOldSelf": true}]}}));
    let s = Structural::new(&s).unwrap();
    let v = Validator::new(&s).unwrap();
    let new = json!({"spec": {"name": "b"}});
    assert!(v.validate(&new, None).is_empty());
    let errs: Vec<String> =
        v.validate(&new, Some(&json!({"spec": {"name": "a"}}))).iter().map(|e| e.to_string()).collect();
    assert_eq!(errs, [r#"spec: Invalid value: "object": name is immutable"#]);
    assert!(v.validate(&new, Some(&json!({"spec": {"name": "b"}}))).is_empty());
    let forbidden = json!({"spec": {"name": "forbidden"}});
    assert!(v.validate(&forbidden, None).is_empty());
    let errs: Vec<String> =
        v.validate(&forbidden, Some(&json!({"spec": {"name": "x"}}))).iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[1].contains("failed rule: !oldSelf.hasValue()"), "{errs:?}");
}

#[test]
fn transition_rules_correlate_map_list_items_by_key() {
    let s = Structural::new(&object(json!({"items": {"type": "array", "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object",
            "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "self.value == oldSelf.value", "message": "value is immutable"}]}}})))
    .unwrap();
    let v = Validator::new(&s).unwrap();
    let old = json!({"items": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]});
    // Reordered and extended: same values by key pass; the new item has no old value.
    assert!(
        v.validate(
            &json!({"items": [{"name": "b", "value": "2"}, {"name": "c", "value": "9"}, {"name": "a", "value": "1"}]}),
            Some(&old)
        )
        .is_empty()
    );
    let errs: Vec<String> = v
        .validate(&json!({"items": [{"name": "b", "value": "3"}]}), Some(&old))
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errs, [r#"items[0]: Invalid value: "object": value is immutable"#]);
}

#[test]
fn messages_reasons_and_field_paths() {
    let s = Structural::new(&object(json!({"spec": {"type": "object",
    "properties": {"replicas": {"type": "integer"}, "m": map_of(json!({"type": "string"}))},
    "x-kubernetes-validations": [
        {"rule": "self.replicas > 0"},
        {"rule": "self.replicas > 1", "message": "  must be greater than one  "},
        {"rule": "self.replicas > 2", "messageExpression": "'replicas ' + string(self.replicas) + ' is too few'"},
        {"rule": "self.replicas > 3", "message": "static", "messageExpression": "self.m['missing']"},
        {"rule": "self.replicas > 4", "messageExpression": "''"},
        {"rule": "self.replicas > 5", "reason": "FieldValueForbidden", "message": "forbidden"},
        {"rule": "self.replicas > 6", "reason": "FieldValueRequired", "message": "required"},
        {"rule": "self.replicas > 7", "reason": "FieldValueDuplicate"},
        {"rule": "self.replicas > 8", "fieldPath": ".replicas"},
        {"rule": "self.replicas > 9", "fieldPath": ".m['a.b']"},
    ]}})))
    .unwrap();
    let v = Validator::new(&s).unwrap();
    let errs: Vec<String> =
        v.validate(&json!({"spec": {"replicas": 0, "m": {}}}), None).iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errs,
        [
            r#"spec: Invalid value: "object": failed rule: self.replicas > 0"#,
            r#"spec: Invalid value: "object": must be greater than one"#,
            r#"spec: Invalid value: "object": replicas 0 is too few"#,
            r#"spec: Invalid value: "object": static"#,
            r#"spec: Invalid value: "object": failed rule: self.replicas > 4"#,
            "spec: Forbidden: forbidden",
            "spec: Required value: required",
            r#"spec: Duplicate value: "object""#,
            r#"spec.replicas: Invalid value: "object": failed rule: self.replicas > 8"#,
            r#"spec.m[a.b]: Invalid value: "object": failed rule: self.replicas > 9"#,
        ]
    );
}

#[test]
fn rules_at_schema_levels() {
    // upstream TestValidationExpressionsAtSchemaLevels: rules under items, additionalProperties, escaped and
    // unescapable property names, allOf (anyOf/oneOf/not are ignored).
    let with = |s: Json, rule: &str| {
        let mut s = s;
        s["x-kubernetes-validations"] = json!([{"rule": rule}]);
        s
    };
    let check = |schema: Json, obj: Json, want: &[&str]| {
        let s = Structural::new(&schema).unwrap();
        let v = Validator::new(&s).unwrap();
        let got: Vec<String> = v.validate(&obj, None).iter().map(|e| e.to_string()).collect();
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(g.contains(w), "{g:?} lacks {w:?}");
        }
    };
    let inner = object(json!({"m": {"type": "integer"}}));
    check(
        object(json!({"f/2": with(inner.clone(), "self.m == 2")})),
        json!({"f/2": {"m": 1}}),
        &[r#"f/2: Invalid value: "object": failed rule: self.m == 2"#],
    );
    check(
        object(json!({"a@b": with(inner.clone(), "self.m == 2")})),
        json!({"a@b": {"m": 1}}),
        &[r#"a@b: Invalid value: "object": failed rule: self.m == 2"#],
    );
    check(
        object(json!({"f": list_of(with(json!({"type": "integer"}), "self > 1"))})),
        json!({"f": [1, 2]}),
        &[r#"f[0]: Invalid value: "integer": failed rule: self > 1"#],
    );
    check(
        object(json!({"f": map_of(with(json!({"type": "integer"}), "self > 1"))})),
        json!({"f": {"k": 1}}),
        &[r#"f[k]: Invalid value: "integer": failed rule: self > 1"#],
    );
    let sel = |_: &str| {
        object(json!({"matchExpressions": list_of(with(object(json!({
        "key": {"type": "string"}, "operator": {"type": "string"}, "values": list_of(json!({"type": "string"}))})), "true"))}))
    };
    let mut s = sel("");
    s["x-kubernetes-validations"] = json!([{"rule": "self.matchExpressions.all(rule, (rule.operator != \"In\" && rule.operator != \"NotIn\") || ((has(rule.values) && size(rule.values) > 0)))"}]);
    check(s, json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": []}]}), &["failed rule"]);
    let all_of = json!({"type": "object", "properties": {"key": {"type": "string"}, "key2": {"type": "string"}},
        "allOf": [
            {"x-kubernetes-validations": [{"rule": "self.key == 'value' && self.key2 == 'value2'", "message": "key must be 'value' and key2 must be 'value2'"}]},
            {"x-kubernetes-validations": [{"rule": "self.key != self.key2", "message": "key must not be equal to key2"}]}],
        "anyOf": [{"x-kubernetes-validations": [{"rule": "false", "message": "anyOf is ignored"}]}]});
    check(
        all_of,
        json!({"key": "value", "key2": "value"}),
        &["key must be 'value' and key2 must be 'value2'", "key must not be equal to key2"],
    );
    let all_of_items = object(json!({"myList": {"type": "array", "items": {"type": "string"}, "allOf": [
        {"items": {"x-kubernetes-validations": [{"rule": "self.size() == 5", "message": "len must be 5"}]}},
        {"items": {"x-kubernetes-validations": [{"rule": "self == \"value2\" || self != \"value\"", "message": "must be value2 or not value"}]}}]}}));
    check(all_of_items, json!({"myList": ["value", "value2"]}), &["len must be 5", "must be value2 or not value"]);
}

#[test]
fn runtime_errors_and_the_cost_budget() {
    let s = Structural::new(&object(json!({"l": {"type": "array", "items": {"type": "integer"},
        "x-kubernetes-validations": [
            {"rule": "self.all(x, self.all(y, self.all(z, x + y + z > 0)))"},
            {"rule": "self.size() > 100"}]}})))
    .unwrap();
    let v = Validator::new(&s).unwrap();
    let big: Vec<i64> = (1..=200).collect();
    let started = Instant::now();
    let errs: Vec<String> = v.validate(&json!({"l": big}), None).iter().map(|e| e.to_string()).collect();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(
        errs,
        [format!(
            "l: Invalid value: \"array\": '{COST_EXCEEDED}': no further validation rules will be run due to call cost exceeds limit for rule: self.all(x, self.all(y, self.all(z, x + y + z > 0)))"
        )]
    );
    // Runtime errors are reported per rule, and evaluation goes on.
    let s = Structural::new(&object(json!({"s": {"x-kubernetes-int-or-string": true,
        "x-kubernetes-validations": [{"rule": "self > 1"}, {"rule": "self.startsWith('a')", "message": "starts with a"}]}}))).unwrap();
    let v = Validator::new(&s).unwrap();
    let errs: Vec<String> = v.validate(&json!({"s": "b"}), None).iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with(r#"s: Invalid value: "": 'no such overload"#), "{errs:?}");
    assert!(
        errs[0].ends_with(
            "': call arguments did not match a supported operator, function or macro signature for rule: self > 1"
        ),
        "{errs:?}"
    );
    assert_eq!(errs[1], r#"s: Invalid value: "": starts with a"#);
}

#[test]
fn ratcheting_keeps_unchanged_invalid_values() {
    let s = Structural::new(&object(
        json!({"a": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() < 3"}]},
        "b": {"type": "string"}}),
    ))
    .unwrap();
    let v = Validator::new(&s).unwrap();
    let old = json!({"a": "long", "b": "x"});
    assert!(v.validate(&json!({"a": "long", "b": "y"}), Some(&old)).is_empty(), "unchanged a ratchets");
    assert_eq!(v.validate(&json!({"a": "longer", "b": "y"}), Some(&old)).len(), 1);
    assert_eq!(v.validate(&json!({"a": "long"}), None).len(), 1);
}
