//! The custom resource strategy's schema steps (upstream `registry/customresource` and the CR codec): a decoded
//! object is normalized (metadata coerced, unknown fields pruned and reported for `fieldValidation`, nulls of
//! non-nullable fields without defaults dropped, defaults applied), then validated against the version's
//! structural schema, embedded-resource metadata and list types, with upstream's 422 causes.

use api_types::{ApiError, Cause};
use serde_json::Value;

use super::schema::field::{ErrorType, FieldError};
use super::schema::objectmeta::{self, CoerceOptions, ObjectMetaOptions};
use super::schema::{defaulting, listtype, prune};
use super::served::CustomVersion;
use crate::registry::FieldValidation;

/// Normalizes a request object as the CR decoder does; returns the unknown-field warnings for `Warn` (a `Strict`
/// request with unknown fields is a 400).
pub fn normalize(cv: &CustomVersion, obj: &mut Value, mode: FieldValidation) -> Result<Vec<String>, ApiError> {
    let report = mode != FieldValidation::Ignore;
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    };
    let mut unknown = Vec::new();
    let opts = ObjectMetaOptions { return_unknown_field_paths: report, ..Default::default() };
    match objectmeta::get_object_meta(map, &opts) {
        Ok(Some((meta, fields))) => {
            map.insert("metadata".into(), Value::Object(meta));
            unknown.extend(fields);
        }
        Ok(None) => {}
        Err(e) => return Err(ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))),
    }
    let s = cv.structural.as_ref();
    if s.is_some() {
        let pruned = prune::prune(obj, s, true);
        if report {
            unknown.extend(pruned);
        }
        defaulting::prune_non_nullable_nulls_without_defaults(obj, s);
        let coerce = CoerceOptions { drop_invalid_fields: false, return_unknown_field_paths: report };
        match objectmeta::coerce("", obj, s, false, coerce) {
            Ok(more) => unknown.extend(more),
            Err(e) => return Err(ApiError::bad_request(e.to_string())),
        }
        defaulting::apply_defaults(obj, s);
    }
    unknown.sort();
    unknown.dedup();
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let messages: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
    match mode {
        FieldValidation::Strict => {
            Err(ApiError::bad_request(format!("strict decoding error: {}", messages.join(", "))))
        }
        FieldValidation::Warn => Ok(messages),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

/// The schema's verdict on an object about to be written (`old`: its current state, on update): upstream's 422
/// causes, empty when valid. The CEL rules run last, and only when the schema found no blocking error.
pub fn validate(cv: &CustomVersion, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errors = Vec::new();
    if let Some(v) = &cv.validator {
        errors.extend(v.validate(obj));
    }
    let s = cv.structural.as_ref();
    errors.extend(objectmeta::validate("", obj, s, false));
    if let Some(map) = obj.as_object() {
        errors.extend(listtype::validate_list_sets_and_maps("", s, map));
    }
    if let Some(rules) = &cv.cel {
        if errors.iter().any(|e| blocks_cel(e.kind)) {
            errors.push(FieldError::invalid(
                "",
                Value::Null,
                "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ));
        } else {
            errors.extend(rules.validate(obj, old));
        }
    }
    errors.iter().map(|e| e.to_cause()).collect()
}

/// upstream `hasBlockingErr`: type, required, enum, maxLength, maxItems and maxProperties failures leave the object
/// in a shape the rules cannot be evaluated on.
fn blocks_cel(kind: ErrorType) -> bool {
    matches!(
        kind,
        ErrorType::NotSupported
            | ErrorType::Required
            | ErrorType::TooLong
            | ErrorType::TooMany
            | ErrorType::TypeInvalid
    )
}
