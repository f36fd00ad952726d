//! The structural schema model (upstream `schema/structural.go` and `convert.go`'s `NewStructural`): a
//! `JSONSchemaProps` (an `openAPIV3Schema` as JSON) split into the structure (type, properties, items,
//! additionalProperties), the Kubernetes extensions and the value validations, with logical junctors kept apart as
//! [`NestedValueValidation`]s.

use serde_json::Value;
use std::collections::BTreeMap;

/// A structural schema node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Structural {
    pub items: Option<Box<Structural>>,
    pub properties: BTreeMap<String, Structural>,
    pub generic: Generic,
    pub extensions: Extensions,
    pub value_validation: ValueValidation,
}

/// `additionalProperties`: a schema, or a bool (`structural` is `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StructuralOrBool {
    pub structural: Option<Box<Structural>>,
    pub allows: bool,
}

/// The generic fields, not allowed in value validations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generic {
    pub description: String,
    /// `object`, `array`, `number`, `integer`, `boolean`, `string`, or empty.
    pub type_: String,
    pub title: String,
    pub default: Option<Value>,
    pub additional_properties: Option<StructuralOrBool>,
    pub nullable: bool,
    pub external_docs: bool,
}

/// The Kubernetes vendor extensions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extensions {
    pub preserve_unknown_fields: bool,
    pub embedded_resource: bool,
    pub int_or_string: bool,
    pub list_map_keys: Vec<String>,
    pub list_type: Option<String>,
    pub map_type: Option<String>,
    /// `x-kubernetes-validations`, kept as written (CEL rules are compiled elsewhere).
    pub validations: Vec<Value>,
}

/// The value validations of a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValueValidation {
    pub format: String,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub max_length: Option<i64>,
    pub min_length: Option<i64>,
    pub pattern: String,
    pub max_items: Option<i64>,
    pub min_items: Option<i64>,
    pub unique_items: bool,
    pub multiple_of: Option<f64>,
    pub enum_: Vec<Value>,
    pub max_properties: Option<i64>,
    pub min_properties: Option<i64>,
    pub required: Vec<String>,
    pub all_of: Vec<NestedValueValidation>,
    pub one_of: Vec<NestedValueValidation>,
    pub any_of: Vec<NestedValueValidation>,
    pub not: Option<Box<NestedValueValidation>>,
}

/// A schema under allOf/anyOf/oneOf/not: value validations, items and properties; anything generic or an extension
/// set here makes the schema non-structural (except the int-or-string patterns).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NestedValueValidation {
    pub value_validation: ValueValidation,
    pub items: Option<Box<NestedValueValidation>>,
    pub properties: BTreeMap<String, NestedValueValidation>,
    pub additional_properties: Option<Box<NestedValueValidation>>,
    pub forbidden_generics: Generic,
    pub forbidden_extensions: Extensions,
}

impl Structural {
    /// upstream `NewStructural`: fails on what a validated CRD never has (`$ref`, `items` arrays, `definitions`...).
    pub fn new(schema: &Value) -> Result<Structural, String> {
        validate_unsupported_fields(schema)?;
        let mut s = Structural {
            generic: new_generic(schema)?,
            extensions: new_extensions(schema)?,
            value_validation: new_value_validation(schema)?,
            ..Structural::default()
        };
        if let Some(items) = schema.get("items").filter(|i| !i.is_null()) {
            if items.is_array() {
                return Err("OpenAPIV3Schema 'items' must be a schema, but is an array".into());
            }
            s.items = Some(Box::new(Structural::new(items)?));
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                s.properties.insert(k.clone(), Structural::new(v)?);
            }
        }
        Ok(s)
    }

    /// The schema of a field: its property, else the additionalProperties schema.
    pub fn field(&self, name: &str) -> Option<&Structural> {
        self.properties
            .get(name)
            .or_else(|| self.generic.additional_properties.as_ref().and_then(|a| a.structural.as_deref()))
    }

    /// Whether any node of the schema carries a `default` (upstream defaults on read only for such versions).
    pub fn has_defaults(&self) -> bool {
        self.generic.default.is_some()
            || self.items.as_ref().is_some_and(|i| i.has_defaults())
            || self.properties.values().any(Structural::has_defaults)
            || self
                .generic
                .additional_properties
                .as_ref()
                .and_then(|a| a.structural.as_ref())
                .is_some_and(|a| a.has_defaults())
    }
}

fn validate_unsupported_fields(s: &Value) -> Result<(), String> {
    let set = |k: &str| s.get(k).is_some_and(|v| !v.is_null());
    let non_empty = |k: &str| match s.get(k) {
        Some(Value::String(x)) => !x.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    };
    if non_empty("id") {
        return Err("OpenAPIV3Schema 'id' is not supported".into());
    }
    if non_empty("$schema") {
        return Err("OpenAPIV3Schema 'schema' is not supported".into());
    }
    if non_empty("$ref") {
        return Err("OpenAPIV3Schema '$ref' is not supported".into());
    }
    if non_empty("patternProperties") {
        return Err("OpenAPIV3Schema 'patternProperties' is not supported".into());
    }
    if non_empty("dependencies") {
        return Err("OpenAPIV3Schema 'dependencies' is not supported".into());
    }
    if set("additionalItems") {
        return Err("OpenAPIV3Schema 'additionalItems' is not supported".into());
    }
    if non_empty("definitions") {
        return Err("OpenAPIV3Schema 'definitions' is not supported".into());
    }
    Ok(())
}

fn string(s: &Value, k: &str) -> String {
    s.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn boolean(s: &Value, k: &str) -> bool {
    s.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn float(s: &Value, k: &str) -> Option<f64> {
    s.get(k).and_then(Value::as_f64)
}

fn int(s: &Value, k: &str) -> Option<i64> {
    s.get(k).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

fn strings(s: &Value, k: &str) -> Vec<String> {
    s.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn new_generic(s: &Value) -> Result<Generic, String> {
    let mut g = Generic {
        type_: string(s, "type"),
        description: string(s, "description"),
        title: string(s, "title"),
        nullable: boolean(s, "nullable"),
        default: s.get("default").filter(|d| !d.is_null()).cloned(),
        external_docs: s.get("externalDocs").is_some_and(|d| !d.is_null()),
        additional_properties: None,
    };
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => g.additional_properties = Some(StructuralOrBool { structural: None, allows: *b }),
        Some(v @ Value::Object(_)) => {
            g.additional_properties =
                Some(StructuralOrBool { structural: Some(Box::new(Structural::new(v)?)), allows: true })
        }
        _ => {}
    }
    Ok(g)
}

fn new_extensions(s: &Value) -> Result<Extensions, String> {
    let preserve = match s.get("x-kubernetes-preserve-unknown-fields") {
        Some(Value::Bool(false)) => {
            return Err("internal error: 'x-kubernetes-preserve-unknown-fields' must be true or undefined".into());
        }
        Some(Value::Bool(true)) => true,
        _ => false,
    };
    Ok(Extensions {
        preserve_unknown_fields: preserve,
        embedded_resource: boolean(s, "x-kubernetes-embedded-resource"),
        int_or_string: boolean(s, "x-kubernetes-int-or-string"),
        list_map_keys: strings(s, "x-kubernetes-list-map-keys"),
        list_type: s.get("x-kubernetes-list-type").and_then(Value::as_str).map(String::from),
        map_type: s.get("x-kubernetes-map-type").and_then(Value::as_str).map(String::from),
        validations: s.get("x-kubernetes-validations").and_then(Value::as_array).cloned().unwrap_or_default(),
    })
}

fn nested_list(s: &Value, k: &str) -> Result<Vec<NestedValueValidation>, String> {
    s.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(NestedValueValidation::new).collect())
        .unwrap_or(Ok(Vec::new()))
}

fn new_value_validation(s: &Value) -> Result<ValueValidation, String> {
    Ok(ValueValidation {
        format: string(s, "format"),
        maximum: float(s, "maximum"),
        exclusive_maximum: boolean(s, "exclusiveMaximum"),
        minimum: float(s, "minimum"),
        exclusive_minimum: boolean(s, "exclusiveMinimum"),
        max_length: int(s, "maxLength"),
        min_length: int(s, "minLength"),
        pattern: string(s, "pattern"),
        max_items: int(s, "maxItems"),
        min_items: int(s, "minItems"),
        unique_items: boolean(s, "uniqueItems"),
        multiple_of: float(s, "multipleOf"),
        enum_: s.get("enum").and_then(Value::as_array).cloned().unwrap_or_default(),
        max_properties: int(s, "maxProperties"),
        min_properties: int(s, "minProperties"),
        required: strings(s, "required"),
        all_of: nested_list(s, "allOf")?,
        one_of: nested_list(s, "oneOf")?,
        any_of: nested_list(s, "anyOf")?,
        not: match s.get("not").filter(|n| !n.is_null()) {
            Some(n) => Some(Box::new(NestedValueValidation::new(n)?)),
            None => None,
        },
    })
}

impl NestedValueValidation {
    /// upstream `newNestedValueValidation`.
    pub fn new(s: &Value) -> Result<NestedValueValidation, String> {
        validate_unsupported_fields(s)?;
        let mut generics = new_generic(s)?;
        let additional_properties = match s.get("additionalProperties") {
            Some(v @ Value::Object(_)) => Some(Box::new(NestedValueValidation::new(v)?)),
            Some(Value::Bool(_)) => Some(Box::default()),
            _ => None,
        };
        generics.additional_properties = None;
        let mut v = NestedValueValidation {
            value_validation: new_value_validation(s)?,
            forbidden_generics: generics,
            forbidden_extensions: new_extensions(s)?,
            additional_properties,
            ..NestedValueValidation::default()
        };
        if let Some(items) = s.get("items").filter(|i| !i.is_null()) {
            if items.is_array() {
                return Err("OpenAPIV3Schema 'items' must be a schema, but is an array".into());
            }
            v.items = Some(Box::new(NestedValueValidation::new(items)?));
        }
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (k, p) in props {
                v.properties.insert(k.clone(), NestedValueValidation::new(p)?);
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splits_structure_extensions_and_validations() {
        let s = Structural::new(&json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {"replicas": {"type": "integer", "minimum": 1, "default": 1, "format": "int32"}},
                    "additionalProperties": false,
                    "anyOf": [{"required": ["replicas"]}],
                },
                "ports": {
                    "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port"],
                    "items": {"type": "object", "properties": {"port": {"type": "integer"}}},
                    "x-kubernetes-validations": [{"rule": "self.size() > 0"}],
                },
                "ios": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            },
        }))
        .unwrap();
        let spec = &s.properties["spec"];
        assert!(spec.extensions.preserve_unknown_fields);
        assert_eq!(spec.generic.additional_properties, Some(StructuralOrBool { structural: None, allows: false }));
        assert_eq!(spec.value_validation.any_of[0].value_validation.required, vec!["replicas".to_string()]);
        let r = &spec.properties["replicas"];
        assert_eq!((r.generic.type_.as_str(), r.generic.default.clone()), ("integer", Some(json!(1))));
        assert_eq!((r.value_validation.minimum, r.value_validation.format.as_str()), (Some(1.0), "int32"));
        let ports = &s.properties["ports"];
        assert_eq!(ports.extensions.list_type.as_deref(), Some("map"));
        assert_eq!(ports.extensions.list_map_keys, vec!["port".to_string()]);
        assert_eq!(ports.extensions.validations.len(), 1);
        assert_eq!(ports.items.as_ref().unwrap().properties["port"].generic.type_, "integer");
        let ios = &s.properties["ios"];
        assert_eq!(ios.value_validation.any_of[1].forbidden_generics.type_, "string");
        assert!(s.has_defaults());
    }

    #[test]
    fn rejects_what_validation_forbids() {
        for (schema, err) in [
            (json!({"$ref": "#/x"}), "OpenAPIV3Schema '$ref' is not supported"),
            (json!({"items": [{"type": "string"}]}), "OpenAPIV3Schema 'items' must be a schema, but is an array"),
            (json!({"definitions": {"a": {}}}), "OpenAPIV3Schema 'definitions' is not supported"),
            (
                json!({"properties": {"a": {"patternProperties": {"x": {}}}}}),
                "OpenAPIV3Schema 'patternProperties' is not supported",
            ),
            (
                json!({"x-kubernetes-preserve-unknown-fields": false}),
                "internal error: 'x-kubernetes-preserve-unknown-fields' must be true or undefined",
            ),
        ] {
            assert_eq!(Structural::new(&schema).unwrap_err(), err);
        }
    }
}
