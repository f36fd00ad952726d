//! upstream `ValidateStructural` (`schema/validation.go` and `complete.go`): every specified node is typed, value
//! validations under allOf/anyOf/oneOf/not carry no types, defaults or extensions (but the int-or-string patterns),
//! everything they name is also specified outside, metadata only restricts `name`/`generateName`, and no
//! `additionalProperties` at the root. Errors come sorted by their text, as upstream's.

use super::field::{FieldError, child, index, key};
use super::structural::{Generic, NestedValueValidation, Structural, ValueValidation};
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// upstream's `ValidationOptions`; CRDs use all `false` ([`validate_structural`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub allow_nested_additional_properties: bool,
    pub allow_nested_x_validations: bool,
    pub allow_validation_properties_with_additional_properties: bool,
}

/// `ValidateStructural(fldPath, s)` for a CRD, e.g. with `path` = `spec.versions[0].schema.openAPIV3Schema`.
pub fn validate_structural(path: &str, s: &Structural) -> Vec<FieldError> {
    validate_structural_with_options(path, s, Options::default())
}

pub fn validate_structural_with_options(path: &str, s: &Structural, opts: Options) -> Vec<FieldError> {
    let mut errs = invariants(Some(s), Level::Root, path, opts);
    errs.extend(value_validation_completeness(Some(&s.value_validation), Some(s), path, path, opts));
    errs.sort_by_key(|e| e.to_string());
    errs
}

fn invariants(s: Option<&Structural>, lvl: Level, path: &str, opts: Options) -> Vec<FieldError> {
    let Some(s) = s else { return Vec::new() };
    let mut errs = Vec::new();
    if s.generic.type_ == "array" && s.items.is_none() {
        errs.push(FieldError::required(&child(path, "items"), "must be specified"));
    }
    errs.extend(invariants(s.items.as_deref(), Level::Item, &child(path, "items"), opts));
    for (k, v) in &s.properties {
        errs.extend(invariants(Some(v), Level::Field, &key(&child(path, "properties"), k), opts));
    }
    if let Some(ap) = &s.generic.additional_properties {
        if lvl == Level::Root {
            errs.push(FieldError::forbidden(&child(path, "additionalProperties"), "must not be used at the root"));
        }
        errs.extend(invariants(ap.structural.as_deref(), Level::Field, &child(path, "additionalProperties"), opts));
    }
    let x = &s.extensions;
    if x.int_or_string && x.preserve_unknown_fields {
        errs.push(FieldError::invalid(
            &child(path, "x-kubernetes-preserve-unknown-fields"),
            Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if x.int_or_string && x.embedded_resource {
        errs.push(FieldError::invalid(
            &child(path, "x-kubernetes-embedded-resource"),
            Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }

    let skip_any_of = is_int_or_string_any_of(&s.value_validation.any_of);
    let skip_first_all_of_any_of =
        s.value_validation.all_of.first().is_some_and(|a| is_int_or_string_any_of(&a.value_validation.any_of));
    errs.extend(value_validation(&s.value_validation, skip_any_of, skip_first_all_of_any_of, lvl, path, opts));

    let check_metadata = lvl == Level::Root || x.embedded_resource;
    let ty = s.generic.type_.as_str();
    if x.embedded_resource && ty != "object" {
        if ty.is_empty() {
            errs.push(FieldError::required(
                &child(path, "type"),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else {
            errs.push(FieldError::invalid(
                &child(path, "type"),
                Value::from(ty),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    } else if ty.is_empty() && !x.int_or_string && !x.preserve_unknown_fields {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(&child(path, "type"), detail));
    }
    if x.embedded_resource && s.generic.additional_properties.is_some() {
        errs.push(FieldError::forbidden(
            &child(path, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !ty.is_empty() && ty != "object" {
        errs.push(FieldError::invalid(&child(path, "type"), Value::from(ty), "must be object at the root"));
    }
    for meta in ["kind", "apiVersion"] {
        if let Some(p) = s.properties.get(meta).filter(|_| check_metadata)
            && p.generic.type_ != "string"
        {
            errs.push(FieldError::invalid(
                &child(&key(&child(path, "properties"), meta), "type"),
                Value::from(p.generic.type_.as_str()),
                "must be string",
            ));
        }
    }
    if let Some(m) = s.properties.get("metadata") {
        errs.extend(metadata_invariants(m, check_metadata, lvl, &key(&child(path, "properties"), "metadata")));
    }
    if x.embedded_resource && !x.preserve_unknown_fields && s.properties.is_empty() {
        errs.push(FieldError::required(
            &child(path, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
    errs
}

/// upstream `validateStructuralMetadataInvariants`.
fn metadata_invariants(s: &Structural, check_metadata: bool, lvl: Level, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if check_metadata && s.generic.type_ != "object" {
        errs.push(FieldError::invalid(&child(path, "type"), Value::from(s.generic.type_.as_str()), "must be object"));
    }
    if lvl == Level::Root {
        let mut s = s.clone();
        let name = s.properties.contains_key("name");
        let generate_name = s.properties.contains_key("generateName");
        if (name && generate_name && s.properties.len() == 2) || ((name || generate_name) && s.properties.len() == 1) {
            s.properties.clear();
        }
        s.generic.type_.clear();
        s.generic.default = None;
        if s != Structural::default() {
            errs.push(FieldError::forbidden(
                path,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    errs
}

/// anyOf: [{type: integer}, {type: string}] and nothing else.
fn is_int_or_string_any_of(any_of: &[NestedValueValidation]) -> bool {
    let typed = |t: &str| NestedValueValidation {
        forbidden_generics: Generic { type_: t.to_string(), ..Generic::default() },
        ..NestedValueValidation::default()
    };
    any_of.len() == 2 && any_of[0] == typed("integer") && any_of[1] == typed("string")
}

fn value_validation(
    v: &ValueValidation,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    lvl: Level,
    path: &str,
    opts: Options,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let no_cel = Options { allow_nested_x_validations: false, ..opts };
    if !skip_any_of {
        for (i, a) in v.any_of.iter().enumerate() {
            errs.extend(nested(Some(a), false, false, lvl, &index(&child(path, "anyOf"), i), no_cel));
        }
    }
    for (i, a) in v.all_of.iter().enumerate() {
        let skip = skip_first_all_of_any_of && i == 0;
        errs.extend(nested(Some(a), skip, false, lvl, &index(&child(path, "allOf"), i), opts));
    }
    for (i, a) in v.one_of.iter().enumerate() {
        errs.extend(nested(Some(a), false, false, lvl, &index(&child(path, "oneOf"), i), no_cel));
    }
    errs.extend(nested(v.not.as_deref(), false, false, lvl, &child(path, "not"), no_cel));
    if !v.pattern.is_empty()
        && let Err(e) = regex::Regex::new(&v.pattern)
    {
        errs.push(FieldError::invalid(
            &child(path, "pattern"),
            Value::from(v.pattern.as_str()),
            format!("must be a valid regular expression, but isn't: {}", regex_error(&v.pattern, &e)),
        ));
    }
    errs
}

/// A pattern's compile error as Go's `regexp.Compile` words it (`error parsing regexp: missing argument to
/// repetition operator: `+``), from the regex crate's syntax error.
pub fn regex_error(pattern: &str, e: &regex::Error) -> String {
    let regex::Error::Syntax(text) = e else { return format!("error parsing regexp: {e}") };
    let lines: Vec<&str> = text.lines().collect();
    let kind = lines.last().map(|l| l.trim().trim_start_matches("error: ")).unwrap_or_default();
    // The caret line under the pattern gives the offset of the problem.
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with('^'))
        .and_then(|i| lines[i].find('^'))
        .map(|c| c.saturating_sub(4))
        .unwrap_or(0);
    let from = |i: usize| pattern.get(i..).unwrap_or(pattern);
    let (code, expr) = match kind {
        "repetition operator missing expression" => {
            ("missing argument to repetition operator", from(at).chars().next().map(String::from).unwrap_or_default())
        }
        "unclosed group" => ("missing closing )", pattern.to_string()),
        "unopened group" => ("unexpected )", pattern.to_string()),
        "unclosed character class" => ("missing closing ]", from(at).to_string()),
        "invalid escape sequence found in character class" | "unrecognized escape sequence" => {
            ("invalid escape sequence", from(at).chars().take(2).collect())
        }
        "invalid character class range, the start must be <= the end" => {
            ("invalid character class range", from(at).to_string())
        }
        other => return format!("error parsing regexp: {other}: `{pattern}`"),
    };
    format!("error parsing regexp: {code}: `{expr}`")
}

fn nested(
    v: Option<&NestedValueValidation>,
    skip_any_of: bool,
    skip_all_of_any_of: bool,
    lvl: Level,
    path: &str,
    opts: Options,
) -> Vec<FieldError> {
    let Some(v) = v else { return Vec::new() };
    let mut errs = value_validation(&v.value_validation, skip_any_of, skip_all_of_any_of, lvl, path, opts);
    errs.extend(nested(v.items.as_deref(), false, false, lvl, &child(path, "items"), opts));
    for (k, f) in &v.properties {
        errs.extend(nested(Some(f), false, false, Level::Field, &key(&child(path, "properties"), k), opts));
    }
    let g = &v.forbidden_generics;
    if !g.type_.is_empty() {
        errs.push(FieldError::forbidden(&child(path, "type"), "must be empty to be structural"));
    }
    if v.additional_properties.is_some() && !opts.allow_nested_additional_properties {
        errs.push(FieldError::forbidden(&child(path, "additionalProperties"), "must be undefined to be structural"));
    } else {
        errs.extend(nested(
            v.additional_properties.as_deref(),
            false,
            false,
            lvl,
            &child(path, "additionalProperties"),
            opts,
        ));
    }
    if g.default.is_some() {
        errs.push(FieldError::forbidden(&child(path, "default"), "must be undefined to be structural"));
    }
    if !g.title.is_empty() {
        errs.push(FieldError::forbidden(&child(path, "title"), "must be empty to be structural"));
    }
    if !g.description.is_empty() {
        errs.push(FieldError::forbidden(&child(path, "description"), "must be empty to be structural"));
    }
    if g.nullable {
        errs.push(FieldError::forbidden(&child(path, "nullable"), "must be false to be structural"));
    }
    if g.external_docs {
        errs.push(FieldError::forbidden(&child(path, "externalDocs"), "must be undefined to be structural"));
    }
    let x = &v.forbidden_extensions;
    if x.preserve_unknown_fields {
        errs.push(FieldError::forbidden(
            &child(path, "x-kubernetes-preserve-unknown-fields"),
            "must be false to be structural",
        ));
    }
    if x.embedded_resource {
        errs.push(FieldError::forbidden(
            &child(path, "x-kubernetes-embedded-resource"),
            "must be false to be structural",
        ));
    }
    if x.int_or_string {
        errs.push(FieldError::forbidden(&child(path, "x-kubernetes-int-or-string"), "must be false to be structural"));
    }
    if !x.list_map_keys.is_empty() {
        errs.push(FieldError::forbidden(&child(path, "x-kubernetes-list-map-keys"), "must be empty to be structural"));
    }
    if x.list_type.is_some() {
        errs.push(FieldError::forbidden(&child(path, "x-kubernetes-list-type"), "must be undefined to be structural"));
    }
    if x.map_type.is_some() {
        errs.push(FieldError::forbidden(&child(path, "x-kubernetes-map-type"), "must be undefined to be structural"));
    }
    if !x.validations.is_empty() && !opts.allow_nested_x_validations {
        errs.push(FieldError::forbidden(&child(path, "x-kubernetes-validations"), "must be empty to be structural"));
    }
    if v.properties.contains_key("metadata") {
        errs.push(FieldError::forbidden(
            &key(&child(path, "properties"), "metadata"),
            "must not be specified in a nested context",
        ));
    }
    errs
}

fn because(s_path: &str, v_path: &str) -> FieldError {
    FieldError::required(s_path, format!("because it is defined in {v_path}"))
}

/// upstream `validateValueValidationCompleteness`.
fn value_validation_completeness(
    v: Option<&ValueValidation>,
    s: Option<&Structural>,
    s_path: &str,
    v_path: &str,
    opts: Options,
) -> Vec<FieldError> {
    let Some(v) = v else { return Vec::new() };
    let Some(s) = s else { return vec![because(s_path, v_path)] };
    let mut errs = nested_completeness(v.not.as_deref(), Some(s), s_path, &child(v_path, "not"), opts);
    for (name, list) in [("allOf", &v.all_of), ("anyOf", &v.any_of), ("oneOf", &v.one_of)] {
        for (i, a) in list.iter().enumerate() {
            errs.extend(nested_completeness(Some(a), Some(s), s_path, &index(&child(v_path, name), i), opts));
        }
    }
    errs
}

fn nested_completeness(
    v: Option<&NestedValueValidation>,
    s: Option<&Structural>,
    s_path: &str,
    v_path: &str,
    opts: Options,
) -> Vec<FieldError> {
    let Some(v) = v else { return Vec::new() };
    let Some(s) = s else { return vec![because(s_path, v_path)] };
    let mut errs = value_validation_completeness(Some(&v.value_validation), Some(s), s_path, v_path, opts);
    errs.extend(nested_completeness(
        v.items.as_deref(),
        s.items.as_deref(),
        &child(s_path, "items"),
        &child(v_path, "items"),
        opts,
    ));
    let ap = s.generic.additional_properties.as_ref().and_then(|a| a.structural.as_deref());
    for (k, fv) in &v.properties {
        let vp = key(&child(v_path, "properties"), k);
        match s.properties.get(k) {
            Some(sf) => {
                errs.extend(nested_completeness(Some(fv), Some(sf), &key(&child(s_path, "properties"), k), &vp, opts))
            }
            None if ap.is_none() || !opts.allow_validation_properties_with_additional_properties => {
                errs.push(because(&key(&child(s_path, "properties"), k), &vp))
            }
            None => errs.extend(nested_completeness(Some(fv), ap, &child(s_path, "additionalProperties"), &vp, opts)),
        }
    }
    if v.additional_properties.is_some() && opts.allow_nested_additional_properties {
        errs.extend(nested_completeness(
            v.additional_properties.as_deref(),
            ap,
            &child(s_path, "additionalProperties"),
            &child(v_path, "additionalProperties"),
            opts,
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: serde_json::Value) -> Vec<String> {
        let s = Structural::new(&schema).unwrap();
        validate_structural("spec.validation.openAPIV3Schema", &s).iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn structural_schemas_pass() {
        assert!(check(json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}}},
                "spec": {"type": "object", "properties": {
                    "replicas": {"type": "integer", "minimum": 1},
                    "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "portAllOf": {"x-kubernetes-int-or-string": true, "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"pattern": "^a"}]},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "any": {"x-kubernetes-preserve-unknown-fields": true},
                    "embedded": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
                    "list": {"type": "array", "items": {"type": "string"}},
                }, "anyOf": [{"required": ["replicas"]}, {"properties": {"replicas": {"minimum": 3}}}]},
            },
        }))
        .is_empty());
    }

    #[test]
    fn non_structural_schemas_fail_with_upstreams_messages() {
        assert_eq!(
            check(json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}})),
            vec![
                "spec.validation.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"
            ]
        );
        assert_eq!(
            check(json!({"properties": {"list": {"type": "array", "items": {}}}})),
            vec![
                "spec.validation.openAPIV3Schema.properties[list].items.type: Required value: must not be empty for specified array items",
                "spec.validation.openAPIV3Schema.type: Required value: must not be empty at the root",
            ]
        );
        assert_eq!(
            check(json!({"type": "array", "items": {"type": "string"}})),
            vec!["spec.validation.openAPIV3Schema.type: Invalid value: \"array\": must be object at the root"]
        );
        assert_eq!(
            check(json!({"type": "object", "additionalProperties": {"type": "string"}})),
            vec!["spec.validation.openAPIV3Schema.additionalProperties: Forbidden: must not be used at the root"]
        );
        assert_eq!(
            check(json!({"type": "object", "properties": {"a": {"type": "array"}}})),
            vec!["spec.validation.openAPIV3Schema.properties[a].items: Required value: must be specified"]
        );
        assert_eq!(
            check(
                json!({"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "string", "default": "x", "description": "d", "nullable": true}]}}})
            ),
            vec![
                "spec.validation.openAPIV3Schema.properties[a].anyOf[0].default: Forbidden: must be undefined to be structural",
                "spec.validation.openAPIV3Schema.properties[a].anyOf[0].description: Forbidden: must be empty to be structural",
                "spec.validation.openAPIV3Schema.properties[a].anyOf[0].nullable: Forbidden: must be false to be structural",
                "spec.validation.openAPIV3Schema.properties[a].anyOf[0].type: Forbidden: must be empty to be structural",
            ]
        );
        assert_eq!(
            check(
                json!({"type": "object", "properties": {"a": {"type": "object"}}, "anyOf": [{"properties": {"a": {"properties": {"b": {"minimum": 1}}}}}]})
            ),
            vec![
                "spec.validation.openAPIV3Schema.properties[a].properties[b]: Required value: because it is defined in spec.validation.openAPIV3Schema.anyOf[0].properties[a].properties[b]"
            ]
        );
        // As upstream, completeness is checked from the root's value validations only.
        assert!(check(json!({"type": "object", "properties": {"a": {"type": "object", "anyOf": [{"properties": {"b": {"minimum": 1}}}]}}})).is_empty());
        assert_eq!(
            check(
                json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}})
            ),
            vec![
                "spec.validation.openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
            ]
        );
        assert_eq!(
            check(
                json!({"type": "object", "properties": {"e": {"type": "string", "x-kubernetes-embedded-resource": true}}})
            ),
            vec![
                "spec.validation.openAPIV3Schema.properties[e].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
                "spec.validation.openAPIV3Schema.properties[e].type: Invalid value: \"string\": must be object if x-kubernetes-embedded-resource is true",
            ]
        );
        assert_eq!(
            check(
                json!({"type": "object", "properties": {"i": {"x-kubernetes-int-or-string": true, "x-kubernetes-preserve-unknown-fields": true}}})
            ),
            vec![
                "spec.validation.openAPIV3Schema.properties[i].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true"
            ]
        );
        assert_eq!(
            check(
                json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"kind": {"type": "integer"}}, "x-kubernetes-embedded-resource": true}}})
            ),
            vec![
                "spec.validation.openAPIV3Schema.properties[a].properties[kind].type: Invalid value: \"integer\": must be string"
            ]
        );
        assert_eq!(
            check(json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(a"}}})),
            vec![
                "spec.validation.openAPIV3Schema.properties[a].pattern: Invalid value: \"(a\": must be a valid regular expression, but isn't: error parsing regexp: missing closing ): `(a`"
            ]
        );
        assert_eq!(
            check(
                json!({"type": "object", "properties": {"a": {"type": "object", "anyOf": [{"properties": {"metadata": {}}}], "properties": {"metadata": {"type": "object"}}}}})
            ),
            vec![
                "spec.validation.openAPIV3Schema.properties[a].anyOf[0].properties[metadata]: Forbidden: must not be specified in a nested context"
            ]
        );
    }

    /// upstream TestValidateStructuralMetadataInvariants: only object is a valid metadata type; of ObjectMeta's
    /// fields only name and generateName may be restricted; nothing but type and properties may be set.
    #[test]
    fn metadata_invariants_table() {
        for ty in ["object", "array", "number", "integer", "boolean", "string"] {
            let s = Structural { generic: Generic { type_: ty.into(), ..Generic::default() }, ..Structural::default() };
            assert_eq!(metadata_invariants(&s, true, Level::Root, "").is_empty(), ty == "object", "{ty}");
        }
        for field in [
            "name",
            "generateName",
            "namespace",
            "selfLink",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "labels",
            "annotations",
            "ownerReferences",
            "finalizers",
            "managedFields",
        ] {
            let mut s = Structural {
                generic: Generic { type_: "object".into(), ..Generic::default() },
                ..Structural::default()
            };
            s.properties.insert(field.into(), Structural::default());
            let ok = field == "name" || field == "generateName";
            assert_eq!(metadata_invariants(&s, true, Level::Root, "").is_empty(), ok, "{field}");
        }
        let base = || {
            let mut s = Structural {
                generic: Generic { type_: "object".into(), ..Generic::default() },
                ..Structural::default()
            };
            s.properties.insert("name".into(), Structural::default());
            s.properties.insert("generateName".into(), Structural::default());
            s
        };
        assert!(metadata_invariants(&base(), true, Level::Root, "").is_empty());
        let mut with_default = base();
        with_default.generic.default = Some(json!(42.0));
        assert!(metadata_invariants(&with_default, true, Level::Root, "").is_empty(), "default is checked elsewhere");
        let mutations: Vec<fn(&mut Structural)> = vec![
            |s| s.items = Some(Box::default()),
            |s| s.generic.description = "d".into(),
            |s| s.generic.title = "t".into(),
            |s| s.generic.nullable = true,
            |s| s.generic.additional_properties = Some(Default::default()),
            |s| s.extensions.preserve_unknown_fields = true,
            |s| s.extensions.embedded_resource = true,
            |s| s.extensions.int_or_string = true,
            |s| s.extensions.list_type = Some("atomic".into()),
            |s| s.extensions.validations = vec![json!({"rule": "true"})],
            |s| s.value_validation.max_properties = Some(3),
        ];
        for m in mutations {
            let mut s = base();
            m(&mut s);
            assert!(!metadata_invariants(&s, true, Level::Root, "").is_empty());
        }
    }

    /// upstream TestValidateNestedValueValidationComplete: every forbidden generic and extension field is checked.
    #[test]
    fn nested_forbidden_fields_are_all_checked() {
        let generics: Vec<fn(&mut Generic)> = vec![
            |g| g.description = "x".into(),
            |g| g.type_ = "string".into(),
            |g| g.title = "x".into(),
            |g| g.default = Some(json!(42.0)),
            |g| g.nullable = true,
            |g| g.external_docs = true,
        ];
        for m in generics {
            let mut v = NestedValueValidation::default();
            m(&mut v.forbidden_generics);
            assert!(!nested(Some(&v), false, false, Level::Field, "", Options::default()).is_empty());
        }
        let extensions: Vec<fn(&mut super::super::structural::Extensions)> = vec![
            |x| x.preserve_unknown_fields = true,
            |x| x.embedded_resource = true,
            |x| x.int_or_string = true,
            |x| x.list_map_keys = vec!["a".into()],
            |x| x.list_type = Some("set".into()),
            |x| x.map_type = Some("atomic".into()),
            |x| x.validations = vec![json!({"rule": "true"})],
        ];
        for m in extensions {
            let mut v = NestedValueValidation::default();
            m(&mut v.forbidden_extensions);
            assert!(!nested(Some(&v), false, false, Level::Field, "", Options::default()).is_empty());
        }
        for allowed in [false, true] {
            let opts = Options {
                allow_nested_x_validations: allowed,
                allow_nested_additional_properties: allowed,
                allow_validation_properties_with_additional_properties: allowed,
            };
            let mut v = NestedValueValidation::default();
            v.forbidden_extensions.validations = vec![json!({"rule": "true"})];
            assert_eq!(nested(Some(&v), false, false, Level::Field, "", opts).is_empty(), allowed);
            let v = NestedValueValidation { additional_properties: Some(Box::default()), ..Default::default() };
            assert_eq!(nested(Some(&v), false, false, Level::Field, "", opts).is_empty(), allowed);
        }
    }
}
