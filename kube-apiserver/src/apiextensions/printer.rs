//! Table columns of custom resources (upstream `registry/customresource/tableconvertor`): Name, then the version's
//! `additionalPrinterColumns` (a CRD without any gets `Age` on `.metadata.creationTimestamp`), each cell read by a
//! JSONPath and typed as the column says (integer, number, boolean, string, date as an age), missing = null.
//! Also the static checks of a column definition (upstream `ValidateCustomResourceColumnDefinition`).

use super::jsonpath::{JsonPath, print_results, validate_simple_json_path};
use super::schema::field::{FieldError, child};
use crate::table::human_duration;
use serde_json::{Value, json};

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATION_TIMESTAMP_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The column types a printer column may have.
const DATATYPES: &[&str] = &["boolean", "date", "integer", "number", "string"];
/// The formats a printer column may have.
const FORMATS: &[&str] = &["byte", "date", "date-time", "double", "float", "int32", "int64", "password"];

#[derive(Debug, Clone)]
struct Column {
    definition: Value,
    type_: String,
    path: JsonPath,
}

/// The table convertor of one served version.
#[derive(Debug, Clone)]
pub struct TableConvertor {
    columns: Vec<Column>,
}

impl TableConvertor {
    /// upstream `tableconvertor.New(serveDefaultColumnsIfEmpty(columns))` for a version's
    /// `additionalPrinterColumns` (JSON `CustomResourceColumnDefinition`s).
    pub fn new(additional_printer_columns: &[Value]) -> Result<TableConvertor, String> {
        let default = [json!({
            "name": "Age", "type": "date", "description": CREATION_TIMESTAMP_DESCRIPTION, "jsonPath": ".metadata.creationTimestamp",
        })];
        let cols = if additional_printer_columns.is_empty() { &default[..] } else { additional_printer_columns };
        let mut columns = Vec::new();
        for col in cols {
            let s = |k: &str| col.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let json_path = s("jsonPath");
            let path = JsonPath::parse(&format!("{{{json_path}}}"))
                .map_err(|_| format!("unrecognized column definition {}", super::schema::field::go_quote(&json_path)))?
                .allow_missing_keys(true);
            let description = Some(s("description"))
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| format!("Custom resource definition column (in JSONPath format): {json_path}"));
            let definition = json!({
                "name": s("name"),
                "type": s("type"),
                "format": s("format"),
                "description": description,
                "priority": col.get("priority").and_then(Value::as_i64).unwrap_or(0),
            });
            columns.push(Column { definition, type_: s("type"), path });
        }
        Ok(TableConvertor { columns })
    }

    /// The Table's `columnDefinitions`: Name, then the printer columns.
    pub fn column_definitions(&self) -> Vec<Value> {
        let mut defs = vec![
            json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0}),
        ];
        defs.extend(self.columns.iter().map(|c| c.definition.clone()));
        defs
    }

    /// A row's cells: the name, then one cell per printer column.
    pub fn cells(&self, obj: &Value) -> Vec<Value> {
        let mut cells = vec![obj.pointer("/metadata/name").cloned().unwrap_or_else(|| Value::from(""))];
        for c in &self.columns {
            let results = match c.path.find_results(obj) {
                Ok(r) if !r.is_empty() && !r[0].is_empty() => r,
                _ => {
                    cells.push(Value::Null);
                    continue;
                }
            };
            let values = &results[0];
            let value = if values.len() == 1 { values[0].clone() } else { Value::Array(values.clone()) };
            if c.type_ == "string" {
                cells.push(match &value {
                    // upstream prints the nil interface it gets for a null field
                    Value::Null => Value::from("<no value>"),
                    v => print_results(std::slice::from_ref(v)).map(Value::from).unwrap_or(Value::Null),
                });
            } else {
                cells.push(cell_for_json_value(&c.type_, &value, jiff::Timestamp::now()));
            }
        }
        cells
    }
}

/// upstream `cellForJSONValue`, with the current time for `date` ages.
pub fn cell_for_json_value(header_type: &str, value: &Value, now: jiff::Timestamp) -> Value {
    match (header_type, value) {
        (_, Value::Null) => Value::Null,
        ("integer", Value::Number(n)) => Value::from(n.as_i64().unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64)),
        ("number", Value::Number(n)) => Value::from(n.as_f64().unwrap_or(0.0)),
        ("boolean", Value::Bool(b)) => Value::from(*b),
        ("string", Value::String(s)) => Value::from(s.as_str()),
        ("date", Value::String(s)) => Value::from(human_age(s, now)),
        _ => Value::Null,
    }
}

/// metav1.Time's query-parameter form (RFC 3339; empty = zero) as `ConvertToHumanReadableDateType` renders it.
fn human_age(s: &str, now: jiff::Timestamp) -> String {
    if s.is_empty() {
        return "<unknown>".into();
    }
    match s.parse::<jiff::Timestamp>() {
        Ok(t) if t.as_second() == -62135596800 => "<unknown>".into(),
        Ok(t) => human_duration(now.as_second() - t.as_second()),
        Err(_) => "<invalid>".into(),
    }
}

/// upstream `ValidateCustomResourceColumnDefinition` for one `additionalPrinterColumns` entry at `path`.
pub fn validate_column_definition(col: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let s = |k: &str| col.get(k).and_then(Value::as_str).unwrap_or_default();
    if s("name").is_empty() {
        errs.push(FieldError::required(&child(path, "name"), ""));
    }
    let types = format!("must be one of {}", DATATYPES.join(","));
    if s("type").is_empty() {
        errs.push(FieldError::required(&child(path, "type"), types));
    } else if !DATATYPES.contains(&s("type")) {
        errs.push(FieldError::invalid(&child(path, "type"), Value::from(s("type")), types));
    }
    if !s("format").is_empty() && !FORMATS.contains(&s("format")) {
        errs.push(FieldError::invalid(
            &child(path, "format"),
            Value::from(s("format")),
            format!("must be one of {}", FORMATS.join(",")),
        ));
    }
    if s("jsonPath").is_empty() {
        errs.push(FieldError::required(&child(path, "JSONPath"), ""));
    } else {
        errs.extend(validate_simple_json_path(s("jsonPath"), &child(path, "JSONPath")));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// upstream Test_cellForJSONValue.
    #[test]
    fn cells_by_type() {
        let now = jiff::Timestamp::now();
        let ago = |secs: i64| {
            jiff::Timestamp::from_second(now.as_second() - secs).unwrap().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        };
        let cases = [
            ("integer", json!(42), json!(42)),
            ("integer", json!(3.25), json!(3)),
            ("integer", json!(true), Value::Null),
            ("integer", json!("foo"), Value::Null),
            ("number", json!(42), json!(42.0)),
            ("number", json!(3.25), json!(3.25)),
            ("number", json!(true), Value::Null),
            ("number", json!("foo"), Value::Null),
            ("boolean", json!(42), Value::Null),
            ("boolean", json!(3.25), Value::Null),
            ("boolean", json!(true), json!(true)),
            ("boolean", json!("foo"), Value::Null),
            ("string", json!(42), Value::Null),
            ("string", json!(3.25), Value::Null),
            ("string", json!(true), Value::Null),
            ("string", json!("foo"), json!("foo")),
            ("date", json!(42), Value::Null),
            ("date", json!(3.25), Value::Null),
            ("date", json!(true), Value::Null),
            ("date", json!(ago(12 * 3600 + 30 * 60)), json!("12h")),
            ("date", json!(ago(-(12 * 3600 + 30 * 60))), json!("<invalid>")),
            ("date", json!(""), json!("<unknown>")),
            ("date", json!("yesterday"), json!("<invalid>")),
            ("unknown", json!("foo"), Value::Null),
        ];
        for (ty, v, want) in cases {
            assert_eq!(cell_for_json_value(ty, &v, now), want, "{ty} {v}");
        }
    }

    fn col(name: &str, ty: &str, path: &str) -> Value {
        json!({"name": name, "type": ty, "jsonPath": path})
    }

    /// upstream Test_convertor_ConvertToTable's column cases.
    #[test]
    fn string_and_integer_columns() {
        let obj = json!({
            "apiVersion": "example.istio.io/v1alpha1", "kind": "Blah", "metadata": {"name": "blah"},
            "spec": {"servers": [{"hosts": ["foo"]}, {"hosts": ["bar", "baz"]}], "foo": [{"bar": [1]}, {"bar": [2, 3]}]},
        });
        let t = TableConvertor::new(&[
            col("valueOnly", "string", ".spec.servers[0].hosts[0]"),
            col("single1", "string", ".spec.servers[0].hosts"),
            col("single2", "string", ".spec.servers[1].hosts"),
            col("multi", "string", ".spec.servers[*].hosts"),
        ])
        .unwrap();
        assert_eq!(
            t.cells(&obj),
            vec![
                json!("blah"),
                json!("foo"),
                json!("[\"foo\"]"),
                json!("[\"bar\",\"baz\"]"),
                json!("[[\"foo\"],[\"bar\",\"baz\"]]")
            ]
        );
        let t = TableConvertor::new(&[
            col("valueOnly", "string", ".spec.foo[0].bar[0]"),
            col("single1", "string", ".spec.foo[0].bar"),
            col("single2", "string", ".spec.foo[1].bar"),
            col("multi", "string", ".spec.foo[*].bar"),
        ])
        .unwrap();
        assert_eq!(t.cells(&obj), vec![json!("blah"), json!("1"), json!("[1]"), json!("[2,3]"), json!("[[1],[2,3]]")]);
        let t = TableConvertor::new(&[
            col("valueOnly", "integer", ".spec.foo[0].bar[0]"),
            col("single1", "integer", ".spec.foo[0].bar"),
            col("single2", "integer", ".spec.foo[1].bar"),
            col("multi", "integer", ".spec.foo[*].bar"),
        ])
        .unwrap();
        assert_eq!(t.cells(&obj), vec![json!("blah"), json!(1), Value::Null, Value::Null, Value::Null]);
    }

    #[test]
    fn definitions_and_defaults() {
        let t = TableConvertor::new(&[json!({"name": "Replicas", "type": "integer", "format": "int32", "priority": 1, "jsonPath": ".spec.replicas"}), col("Missing", "string", ".spec.nope")]).unwrap();
        let defs = t.column_definitions();
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[0]["format"], "name");
        assert_eq!(
            defs[1],
            json!({"name": "Replicas", "type": "integer", "format": "int32", "description": "Custom resource definition column (in JSONPath format): .spec.replicas", "priority": 1})
        );
        assert_eq!(
            t.cells(&json!({"metadata": {"name": "a"}, "spec": {"replicas": 3}})),
            vec![json!("a"), json!(3), Value::Null]
        );

        let t = TableConvertor::new(&[]).unwrap();
        let defs = t.column_definitions();
        assert_eq!(defs.len(), 2);
        assert_eq!((defs[1]["name"].as_str(), defs[1]["type"].as_str()), (Some("Age"), Some("date")));
        assert_eq!(defs[1]["description"], CREATION_TIMESTAMP_DESCRIPTION);
        let created = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 300).unwrap().to_string();
        assert_eq!(
            t.cells(&json!({"metadata": {"name": "a", "creationTimestamp": created}})),
            vec![json!("a"), json!("5m")]
        );
        assert_eq!(t.cells(&json!({"metadata": {"name": "a"}})), vec![json!("a"), Value::Null]);

        assert_eq!(
            TableConvertor::new(&[col("x", "string", ".spec[")]).unwrap_err(),
            "unrecognized column definition \".spec[\""
        );
        let t = TableConvertor::new(&[col("x", "string", ".spec.x")]).unwrap();
        assert_eq!(
            t.cells(&json!({"metadata": {"name": "a"}, "spec": {"x": null}})),
            vec![json!("a"), json!("<no value>")]
        );
    }

    #[test]
    fn column_validation() {
        let p = "spec.versions[0].additionalPrinterColumns[0]";
        let msgs = |c: Value| validate_column_definition(&c, p).iter().map(|e| e.to_string()).collect::<Vec<_>>();
        assert!(msgs(json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})).is_empty());
        assert_eq!(
            msgs(json!({"type": "bogus", "format": "x", "jsonPath": "spec"})),
            vec![
                "spec.versions[0].additionalPrinterColumns[0].name: Required value",
                "spec.versions[0].additionalPrinterColumns[0].type: Invalid value: \"bogus\": must be one of boolean,date,integer,number,string",
                "spec.versions[0].additionalPrinterColumns[0].format: Invalid value: \"x\": must be one of byte,date,date-time,double,float,int32,int64,password",
                "spec.versions[0].additionalPrinterColumns[0].JSONPath: Invalid value: \"spec\": must be a simple json path starting with .",
            ]
        );
        assert_eq!(
            msgs(json!({"name": "a"})),
            vec![
                "spec.versions[0].additionalPrinterColumns[0].type: Required value: must be one of boolean,date,integer,number,string",
                "spec.versions[0].additionalPrinterColumns[0].JSONPath: Required value",
            ]
        );
    }
}
