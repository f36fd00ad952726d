//! The Swagger 2.0 document upstream serves at `/openapi/v2`, converted from our OpenAPI v3 group-version
//! documents: operations with v2 parameters (`in: body` with a schema, query and path parameters with their type
//! inline), responses with schemas, and `definitions` in the shape upstream's v2 builder emits, which is also
//! what kubectl's v2 schema parser (kube-openapi `util/proto`) accepts: a plain `$ref` instead of an
//! `allOf: [{$ref}]` wrapper, no `oneOf`/`anyOf`/`nullable`, int-or-string as `type: string`.

use serde_json::{Map, Value, json};

/// Where v3 documents keep schemas and where v2 ones do.
const V3_REF: &str = "#/components/schemas/";
const V2_REF: &str = "#/definitions/";

/// The definition upstream's PATCH operations take as their body.
const PATCH_DEFINITION: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// The kinds whose `metadata` upstream marks required (their Go field has no `omitempty`); for every other kind
/// our v3 schemas list it only because the typed structs make `metadata` non-optional.
const METADATA_REQUIRED: &[&str] = &["io.k8s.api.core.v1.Event", "io.k8s.api.events.v1.Event"];

/// The media types upstream lists on every resource operation.
const PRODUCES: &[&str] = &["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"];
const PATCH_CONSUMES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    STRATEGIC_MERGE_PATCH,
    "application/apply-patch+yaml",
];
const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";

/// The keywords a Swagger 2.0 schema object has; anything else (v3-only) is left out.
const SCHEMA_KEYWORDS: &[&str] = &[
    "$ref",
    "format",
    "title",
    "description",
    "default",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "enum",
    "additionalProperties",
    "type",
    "items",
    "allOf",
    "properties",
    "discriminator",
    "readOnly",
    "xml",
    "externalDocs",
    "example",
];

/// The HTTP methods a Swagger 2.0 path item has, in upstream's order.
const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch"];

/// The whole v2 document from the v3 documents of every served group-version.
pub fn swagger<'a>(v3_docs: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    let mut patches = false;
    for doc in v3_docs {
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            if let Some(item) = path_item(path, item) {
                patches |= item.get("patch").is_some();
                paths.entry(path.clone()).or_insert(item);
            }
        }
        for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
            if !definitions.contains_key(name) {
                definitions.insert(name.clone(), definition(name, schema));
            }
        }
    }
    if patches && !definitions.contains_key(PATCH_DEFINITION) {
        definitions.insert(
            PATCH_DEFINITION.into(),
            json!({
                "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
                "type": "object",
            }),
        );
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::GIT_VERSION},
        "paths": sorted(paths),
        "definitions": sorted(definitions),
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "type": "apiKey",
                "name": "authorization",
                "in": "header",
            },
        },
        "security": [{"BearerToken": []}],
    })
}

fn sorted(m: Map<String, Value>) -> Value {
    let mut entries: Vec<(String, Value)> = m.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Object(entries.into_iter().collect())
}

/// One path: its operations, and the path parameters its template names (`{namespace}`, `{name}`) declared once
/// for all of them, as upstream does. None when the v3 item has no operation.
fn path_item(path: &str, item: &Value) -> Option<Value> {
    let kind = METHODS
        .iter()
        .find_map(|m| item[*m]["x-kubernetes-group-version-kind"]["kind"].as_str())
        .unwrap_or_default()
        .to_string();
    let mut out = Map::new();
    for method in METHODS {
        if let Some(op) = item.get(*method).filter(|o| o.is_object()) {
            out.insert((*method).into(), operation(method, path, op));
        }
    }
    if out.is_empty() {
        return None;
    }
    let mut params: Vec<Value> = match item.get("parameters").and_then(Value::as_array) {
        Some(ps) => ps.iter().map(parameter).collect(),
        None => Vec::new(),
    };
    for name in template_params(path) {
        if params.iter().any(|p| p["name"] == name && p["in"] == "path") {
            continue;
        }
        let description = match name {
            "namespace" => "object name and auth scope, such as for teams and projects".to_string(),
            "name" => format!("name of the {kind}"),
            other => format!("path to the {other}"),
        };
        params.push(json!({
            "uniqueItems": true,
            "type": "string",
            "description": description,
            "name": name,
            "in": "path",
            "required": true,
        }));
    }
    // Sorted by name, as upstream's path parameters (`name`, `namespace`, `pretty`).
    params.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    for (k, v) in item.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            out.insert(k.clone(), v.clone());
        }
    }
    Some(Value::Object(out))
}

/// The `{...}` parameters of a path template, in order.
fn template_params(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}')).collect()
}

/// The schema an operation is about: its request body's, else its first response's, as a v2 reference.
fn operation_schema(op: &Value) -> Option<Value> {
    let from_content = |v: &Value| {
        v["content"].as_object()?.values().find_map(|mt| mt.get("schema").filter(|s| s.is_object())).cloned()
    };
    from_content(&op["requestBody"])
        .or_else(|| op["responses"].as_object()?.values().find_map(from_content))
        .map(|s| schema(&s))
}

/// Upstream's operation id: `createCoreV1NamespacedPod`, `patchAppsV1NamespacedDeployment`,
/// `createAuthenticationV1TokenReview`.
fn operation_id(action: &str, path: &str, gvk: &Value) -> String {
    let verb = match action {
        "get" => "read",
        "put" => "replace",
        "post" => "create",
        other => other,
    };
    let group = match gvk["group"].as_str().unwrap_or_default() {
        "" => "core".to_string(),
        g => lower_camel(g.strip_suffix(".k8s.io").unwrap_or(g)),
    };
    let namespaced = if path.contains("/namespaces/{namespace}/") { "Namespaced" } else { "" };
    format!(
        "{verb}{}{}{namespaced}{}",
        upper_first(&group),
        upper_first(gvk["version"].as_str().unwrap_or_default()),
        gvk["kind"].as_str().unwrap_or_default()
    )
}

/// Upstream's operation tag: `core_v1`, `apps_v1`, `rbacAuthorization_v1`, `authentication_v1`.
fn tag(gvk: &Value) -> String {
    let group = match gvk["group"].as_str().unwrap_or_default() {
        "" => "core".to_string(),
        g => lower_camel(g.strip_suffix(".k8s.io").unwrap_or(g)),
    };
    format!("{group}_{}", gvk["version"].as_str().unwrap_or_default())
}

/// `rbac.authorization` -> `rbacAuthorization`.
fn lower_camel(dotted: &str) -> String {
    dotted.split(['.', '-']).enumerate().map(|(i, p)| if i == 0 { p.to_string() } else { upper_first(p) }).collect()
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// One operation in v2 form, with upstream's description, media types, tags, ids, body and response schemas.
fn operation(method: &str, path: &str, op: &Value) -> Value {
    let gvk = op.get("x-kubernetes-group-version-kind").cloned().unwrap_or(Value::Null);
    let action = op["x-kubernetes-action"].as_str().unwrap_or(method).to_string();
    let kind = gvk["kind"].as_str().unwrap_or_default();
    let target = operation_schema(op);
    let mut out = Map::new();
    let description = match op["description"].as_str() {
        Some(d) => d.to_string(),
        None => match method {
            "get" => format!("read the specified {kind}"),
            "put" => format!("replace the specified {kind}"),
            "post" => format!("create a {kind}"),
            "patch" => format!("partially update the specified {kind}"),
            "delete" => format!("delete a {kind}"),
            other => format!("{other} {kind}"),
        },
    };
    out.insert("description".into(), json!(description));
    let consumes: Vec<&str> = if method == "patch" {
        // Strategic merge only where the v3 document offers it: kubectl computes such a patch from the document's
        // `x-kubernetes-patch-*` extensions when the PATCH lists it, and from its compiled-in types otherwise.
        let smp = op["requestBody"]["content"].get(STRATEGIC_MERGE_PATCH).is_some();
        PATCH_CONSUMES.iter().copied().filter(|c| smp || *c != STRATEGIC_MERGE_PATCH).collect()
    } else {
        vec!["*/*"]
    };
    out.insert("consumes".into(), json!(consumes));
    out.insert("produces".into(), json!(PRODUCES));
    out.insert("schemes".into(), json!(["https"]));
    let tags = match op.get("tags") {
        Some(t) => t.clone(),
        None if gvk.is_object() => json!([tag(&gvk)]),
        None => json!([]),
    };
    out.insert("tags".into(), tags);
    let id = if gvk.is_object() {
        operation_id(&action, path, &gvk)
    } else {
        op["operationId"].as_str().unwrap_or_default().to_string()
    };
    out.insert("operationId".into(), json!(id));

    let mut params = Vec::new();
    // The body: the kind for create and replace, upstream's Patch for patch; read and delete take none here.
    let body = match method {
        "post" | "put" => target.clone(),
        "patch" => Some(json!({"$ref": format!("{V2_REF}{PATCH_DEFINITION}")})),
        _ => None,
    };
    if let Some(schema) = body.filter(|_| op.get("requestBody").is_some()) {
        params.push(json!({"name": "body", "in": "body", "required": true, "schema": schema}));
    }
    params.extend(op["parameters"].as_array().into_iter().flatten().map(parameter));
    out.insert("parameters".into(), Value::Array(params));
    out.insert("responses".into(), responses(method, op, target.as_ref()));
    for (k, v) in op.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// The codes upstream lists per verb with the object as their schema, and their descriptions.
fn success_codes(method: &str) -> &'static [(&'static str, &'static str)] {
    match method {
        "get" => &[("200", "OK")],
        "put" | "patch" => &[("200", "OK"), ("201", "Created")],
        "post" => &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
        _ => &[("200", "OK")],
    }
}

fn responses(method: &str, op: &Value, target: Option<&Value>) -> Value {
    let mut out = Map::new();
    for (code, r) in op["responses"].as_object().into_iter().flatten() {
        if let Some(reference) = r.get("$ref").and_then(Value::as_str) {
            out.insert(code.clone(), json!({"$ref": reference.replace("#/components/responses/", "#/responses/")}));
            continue;
        }
        let mut v = Map::new();
        v.insert("description".into(), r.get("description").cloned().unwrap_or(json!("")));
        let schema = r["content"]
            .as_object()
            .and_then(|c| c.values().find_map(|mt| mt.get("schema")))
            .map(schema)
            .or_else(|| target.filter(|_| method != "delete" && code.starts_with('2')).cloned());
        if let Some(s) = schema {
            v.insert("schema".into(), s);
        }
        out.insert(code.clone(), Value::Object(v));
    }
    if let Some(target) = target.filter(|_| method != "delete") {
        for (code, description) in success_codes(method) {
            out.entry(*code).or_insert_with(|| json!({"description": description, "schema": target}));
        }
    }
    out.entry("401").or_insert_with(|| json!({"description": "Unauthorized"}));
    sorted(out)
}

/// A non-body parameter: v3's `schema` folded into the parameter (`type`, `format`, `items`, `uniqueItems`...).
/// A `$ref` to a shared parameter keeps pointing at it, under v2's `#/parameters/`.
fn parameter(p: &Value) -> Value {
    if let Some(reference) = p.get("$ref").and_then(Value::as_str) {
        return json!({"$ref": reference.replace("#/components/parameters/", "#/parameters/")});
    }
    let mut out = Map::new();
    let s = &p["schema"];
    for k in ["uniqueItems", "type", "format", "items", "default", "enum", "maximum", "minimum", "pattern"] {
        if let Some(v) = s.get(k) {
            out.insert(k.into(), if k == "items" { schema(v) } else { v.clone() });
        }
    }
    for k in ["description", "name", "in", "required", "allowEmptyValue"] {
        if let Some(v) = p.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if p["in"] == "path" {
        out.insert("required".into(), json!(true));
    }
    if !out.contains_key("type") {
        out.insert("type".into(), json!("string"));
    }
    for (k, v) in p.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// A top-level definition: the schema, plus upstream's types for int-or-string and Quantity, and `required`
/// without `metadata` where upstream has none.
fn definition(name: &str, v3: &Value) -> Value {
    let mut out = schema(v3);
    let Some(m) = out.as_object_mut() else { return out };
    if name == QUANTITY {
        // Upstream's Quantity is `type: string` with no format in v2 (its OpenAPISchemaFormat is "").
        m.remove("format");
    }
    if m.contains_key("x-kubernetes-group-version-kind")
        && !METADATA_REQUIRED.contains(&name)
        && let Some(req) = m.get_mut("required").and_then(Value::as_array_mut)
    {
        req.retain(|f| f != "metadata");
        if req.is_empty() {
            m.remove("required");
        }
    }
    out
}

/// `#/components/schemas/X` -> `#/definitions/X`.
fn reference(r: &str) -> String {
    match r.strip_prefix(V3_REF) {
        Some(name) => format!("{V2_REF}{name}"),
        None => r.to_string(),
    }
}

/// One schema in v2 form. Constructs v2 lacks are mapped as upstream's v2 does (for built-in types by its
/// builder, for custom resources by `ToStructuralOpenAPIV2`): a lone `allOf: [{$ref}]` becomes the `$ref`;
/// `oneOf`, `anyOf`, `not` and `nullable` are dropped (a nullable schema loses its type, properties and items);
/// `x-kubernetes-int-or-string` is `type: string, format: int-or-string`; `x-kubernetes-preserve-unknown-fields`
/// drops properties and items (kubectl's v2 validator would otherwise refuse the unknown fields).
pub fn schema(v3: &Value) -> Value {
    // Anything but an object where a schema belongs is no schema v2 can carry: it accepts any value.
    let Some(obj) = v3.as_object() else { return json!({}) };
    let mut out = Map::new();
    let lone_ref = obj
        .get("allOf")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 1 && a[0].as_object().is_some_and(|r| r.len() == 1 && r.contains_key("$ref")))
        .filter(|_| !obj.contains_key("type") && !obj.contains_key("properties") && !obj.contains_key("$ref"))
        .and_then(|a| a[0]["$ref"].as_str());
    for (k, v) in obj {
        let converted = match k.as_str() {
            "$ref" => json!(reference(v.as_str().unwrap_or_default())),
            "allOf" if lone_ref.is_some() => continue,
            "allOf" => Value::Array(v.as_array().into_iter().flatten().map(schema).collect()),
            "items" => match v {
                Value::Array(a) => Value::Array(a.iter().map(schema).collect()),
                other => schema(other),
            },
            "additionalProperties" if v.is_boolean() => v.clone(),
            "additionalProperties" => schema(v),
            "properties" => {
                let mut props: Vec<(String, Value)> =
                    v.as_object().into_iter().flatten().map(|(n, s)| (n.clone(), schema(s))).collect();
                props.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(props.into_iter().collect())
            }
            "x-kubernetes-int-or-string" => continue,
            key if key.starts_with("x-") || SCHEMA_KEYWORDS.contains(&key) => v.clone(),
            _ => continue,
        };
        out.insert(k.clone(), converted);
    }
    if let Some(r) = lone_ref {
        out.insert("$ref".into(), json!(reference(r)));
    }
    if obj.get("x-kubernetes-int-or-string") == Some(&json!(true)) && !out.contains_key("type") {
        out.insert("type".into(), json!("string"));
        out.insert("format".into(), json!("int-or-string"));
    }
    if obj.get("nullable") == Some(&json!(true)) {
        for k in ["type", "properties", "items"] {
            out.remove(k);
        }
    }
    if obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true)) {
        out.remove("properties");
        out.remove("items");
    }
    if out.get("type") == Some(&json!("array")) && !out.contains_key("items") {
        out.remove("type");
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v3_doc() -> Value {
        json!({
            "openapi": "3.0.0",
            "paths": {
                "/apis/authentication.k8s.io/v1/tokenreviews": {"post": {
                    "operationId": "postTokenReview",
                    "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}, "description": "how"}],
                    "x-kubernetes-action": "post",
                    "x-kubernetes-group-version-kind": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenReview"},
                    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/io.k8s.api.authentication.v1.TokenReview"}}}},
                    "responses": {"200": {"description": "OK"}},
                }},
                "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{name}": {"patch": {
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "Role"},
                    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/io.k8s.api.rbac.v1.Role"}}}},
                    "responses": {"200": {"description": "OK"}},
                }},
                "/apis/authentication.k8s.io/v1/tokenreviews/{name}": {},
            },
            "components": {"schemas": {
                "io.k8s.api.authentication.v1.TokenReview": {
                    "type": "object",
                    "properties": {
                        "spec": {"description": "Spec", "allOf": [{"$ref": "#/components/schemas/io.k8s.api.authentication.v1.TokenReviewSpec"}]},
                        "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
                        "apiVersion": {"type": "string"},
                    },
                    "required": ["metadata", "spec"],
                    "x-kubernetes-group-version-kind": [{"group": "authentication.k8s.io", "version": "v1", "kind": "TokenReview"}],
                },
                "io.k8s.api.core.v1.Event": {
                    "type": "object",
                    "properties": {"metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}},
                    "required": ["involvedObject", "metadata"],
                    "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Event"}],
                },
            }},
        })
    }

    #[test]
    fn operations_take_v2_parameters_and_responses() {
        let doc = swagger([&v3_doc()]);
        let post = &doc["paths"]["/apis/authentication.k8s.io/v1/tokenreviews"]["post"];
        let tr = json!({"$ref": "#/definitions/io.k8s.api.authentication.v1.TokenReview"});
        assert_eq!(post["operationId"], "createAuthenticationV1TokenReview");
        assert_eq!(post["tags"], json!(["authentication_v1"]));
        assert_eq!(post["description"], "create a TokenReview");
        assert_eq!(post["consumes"], json!(["*/*"]));
        assert_eq!(post["produces"], json!(PRODUCES));
        assert_eq!(post["schemes"], json!(["https"]));
        assert_eq!(
            post["parameters"],
            json!([
                {"name": "body", "in": "body", "required": true, "schema": tr},
                {"uniqueItems": true, "type": "string", "description": "how", "name": "fieldValidation", "in": "query"},
            ])
        );
        assert_eq!(
            post["responses"],
            json!({
                "200": {"description": "OK", "schema": tr},
                "201": {"description": "Created", "schema": tr},
                "202": {"description": "Accepted", "schema": tr},
                "401": {"description": "Unauthorized"},
            })
        );
        assert_eq!(post["x-kubernetes-action"], "post");
        assert_eq!(post["x-kubernetes-group-version-kind"]["kind"], "TokenReview");
        // A path item with no operation is not listed.
        assert!(doc["paths"].get("/apis/authentication.k8s.io/v1/tokenreviews/{name}").is_none());
    }

    #[test]
    fn patch_takes_upstream_patch_body_and_media_types_and_path_parameters() {
        let doc = swagger([&v3_doc()]);
        let item = &doc["paths"]["/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{name}"];
        let patch = &item["patch"];
        assert_eq!(patch["operationId"], "patchRbacAuthorizationV1NamespacedRole");
        assert_eq!(patch["tags"], json!(["rbacAuthorization_v1"]));
        // No strategic merge: the v3 PATCH does not offer it (our schemas lack upstream's patch merge keys).
        assert_eq!(
            patch["consumes"],
            json!(["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"])
        );
        let mut v3 = v3_doc();
        let role = "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{name}";
        v3["paths"][role]["patch"]["requestBody"]["content"][STRATEGIC_MERGE_PATCH] = json!({"schema": {}});
        assert_eq!(swagger([&v3])["paths"][role]["patch"]["consumes"], json!(PATCH_CONSUMES));
        assert_eq!(patch["parameters"][0]["schema"]["$ref"], format!("#/definitions/{PATCH_DEFINITION}"));
        assert_eq!(patch["responses"]["201"]["schema"]["$ref"], "#/definitions/io.k8s.api.rbac.v1.Role");
        assert_eq!(doc["definitions"][PATCH_DEFINITION]["type"], "object");
        assert_eq!(
            item["parameters"],
            json!([
                {"uniqueItems": true, "type": "string", "description": "name of the Role", "name": "name", "in": "path", "required": true},
                {"uniqueItems": true, "type": "string", "description": "object name and auth scope, such as for teams and projects", "name": "namespace", "in": "path", "required": true},
            ])
        );
    }

    #[test]
    fn document_has_upstream_header_and_security() {
        let doc = swagger([&v3_doc()]);
        assert_eq!(doc["swagger"], "2.0");
        assert_eq!(doc["info"], json!({"title": "Kubernetes", "version": crate::discovery::GIT_VERSION}));
        assert_eq!(
            doc["securityDefinitions"]["BearerToken"],
            json!({"description": "Bearer Token authentication", "type": "apiKey", "name": "authorization", "in": "header"})
        );
        assert_eq!(doc["security"], json!([{"BearerToken": []}]));
        let names: Vec<&String> = doc["definitions"].as_object().unwrap().keys().collect();
        assert!(names.is_sorted(), "{names:?}");
    }

    #[test]
    fn definitions_reference_definitions_without_allof_wrappers() {
        let doc = swagger([&v3_doc()]);
        let tr = &doc["definitions"]["io.k8s.api.authentication.v1.TokenReview"];
        assert_eq!(
            tr["properties"]["spec"],
            json!({"description": "Spec", "$ref": "#/definitions/io.k8s.api.authentication.v1.TokenReviewSpec"})
        );
        assert_eq!(
            tr["properties"]["metadata"],
            json!({"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"})
        );
        // Properties sorted, as upstream's document.
        assert_eq!(
            tr["properties"].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["apiVersion", "metadata", "spec"]
        );
        assert_eq!(tr["x-kubernetes-group-version-kind"][0]["kind"], "TokenReview");
        // `metadata` is required only where upstream says so.
        assert_eq!(tr["required"], json!(["spec"]));
        assert_eq!(doc["definitions"]["io.k8s.api.core.v1.Event"]["required"], json!(["involvedObject", "metadata"]));
    }

    #[test]
    fn v3_only_constructs_map_as_upstream_v2() {
        let or_bool =
            json!({"description": "props or bool", "oneOf": [{"$ref": "#/components/schemas/P"}, {"type": "boolean"}]});
        assert_eq!(schema(&or_bool), json!({"description": "props or bool"}));
        let int_or_string = json!({"description": "d", "x-kubernetes-int-or-string": true});
        assert_eq!(schema(&int_or_string), json!({"description": "d", "type": "string", "format": "int-or-string"}));
        assert_eq!(definition(QUANTITY, &int_or_string), json!({"description": "d", "type": "string"}));
        let nullable =
            json!({"type": "object", "nullable": true, "properties": {"a": {"type": "string"}}, "description": "n"});
        assert_eq!(schema(&nullable), json!({"description": "n"}));
        let preserve = json!({"type": "object", "properties": {"a": {"type": "string"}}, "x-kubernetes-preserve-unknown-fields": true});
        assert_eq!(schema(&preserve), json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        let list = json!({"type": "array", "items": {"type": "string"}, "x-kubernetes-preserve-unknown-fields": true});
        assert_eq!(schema(&list), json!({"x-kubernetes-preserve-unknown-fields": true}));
        // `allOf` of several schemas stays (v2 has it); v3-only keywords go.
        let all = json!({"allOf": [{"$ref": "#/components/schemas/A"}, {"type": "object"}], "writeOnly": true, "deprecated": true});
        assert_eq!(schema(&all), json!({"allOf": [{"$ref": "#/definitions/A"}, {"type": "object"}]}));
        // A reference with a type beside it keeps its wrapper (a $ref with siblings other than a description is
        // refused by kubectl's v2 parser).
        let typed = json!({"type": "object", "allOf": [{"$ref": "#/components/schemas/A"}]});
        assert_eq!(schema(&typed), json!({"type": "object", "allOf": [{"$ref": "#/definitions/A"}]}));
        let map = json!({"type": "object", "additionalProperties": {"allOf": [{"$ref": "#/components/schemas/Q"}]}});
        assert_eq!(schema(&map), json!({"type": "object", "additionalProperties": {"$ref": "#/definitions/Q"}}));
        assert_eq!(schema(&json!({"additionalProperties": false})), json!({"additionalProperties": false}));
        // A property named like a keyword is a property.
        let props = json!({"type": "object", "properties": {"$ref": {"type": "string"}, "allOf": {"type": "array", "items": {"$ref": "#/components/schemas/A"}}}});
        assert_eq!(
            schema(&props)["properties"],
            json!({"$ref": {"type": "string"}, "allOf": {"type": "array", "items": {"$ref": "#/definitions/A"}}})
        );
    }

    /// What kube-openapi's `util/proto` parser (kubectl's v2 validation and explain) refuses, and which would make
    /// kubectl fail to use the whole document: dangling or non-definition references, references with a type or
    /// properties beside them, arrays without one item schema, several types, unknown types.
    fn refused_by_kubectl(s: &Value, path: &str, defs: &Map<String, Value>, out: &mut Vec<String>) {
        let Some(o) = s.as_object() else {
            out.push(format!("{path}: not an object"));
            return;
        };
        if let Some(r) = o.get("$ref").and_then(Value::as_str) {
            if !r.strip_prefix(V2_REF).is_some_and(|n| defs.contains_key(n)) {
                out.push(format!("{path}: dangling {r}"));
            }
            if o.contains_key("type") || o.contains_key("properties") {
                out.push(format!("{path}: $ref with a type or properties"));
            }
        }
        match o.get("type") {
            None => {}
            Some(Value::String(t))
                if ["object", "array", "string", "integer", "number", "boolean"].contains(&t.as_str()) => {}
            Some(t) => out.push(format!("{path}: type {t}")),
        }
        if o.get("type") == Some(&json!("array")) && !o.get("items").is_some_and(Value::is_object) {
            out.push(format!("{path}: array without one item schema"));
        }
        for k in ["oneOf", "anyOf", "nullable", "not"] {
            if o.contains_key(k) {
                out.push(format!("{path}: {k}"));
            }
        }
        for (n, p) in o.get("properties").and_then(Value::as_object).into_iter().flatten() {
            refused_by_kubectl(p, &format!("{path}.{n}"), defs, out);
        }
        for k in ["items", "additionalProperties"] {
            if let Some(sub) = o.get(k).filter(|v| v.is_object()) {
                refused_by_kubectl(sub, &format!("{path}/{k}"), defs, out);
            }
        }
        for (i, sub) in o.get("allOf").and_then(Value::as_array).into_iter().flatten().enumerate() {
            refused_by_kubectl(sub, &format!("{path}/allOf[{i}]"), defs, out);
        }
    }

    #[test]
    fn served_document_is_what_kubectl_parses() {
        let doc = &crate::openapi_v2::served().document;
        let defs = doc["definitions"].as_object().unwrap();
        let mut refused = Vec::new();
        for (name, d) in defs {
            refused_by_kubectl(d, name, defs, &mut refused);
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap().iter().filter(|(m, _)| METHODS.contains(&m.as_str())) {
                for p in op["parameters"].as_array().unwrap().iter().filter(|p| p["in"] == "body") {
                    refused_by_kubectl(&p["schema"], &format!("{path} {method} body"), defs, &mut refused);
                }
                for (code, r) in op["responses"].as_object().unwrap() {
                    if let Some(s) = r.get("schema") {
                        refused_by_kubectl(s, &format!("{path} {method} {code}"), defs, &mut refused);
                    }
                }
            }
        }
        assert!(refused.is_empty(), "{refused:#?}");
        assert!(!doc.to_string().contains("#/components/"));
        let pod = &defs["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"], json!([{"group": "", "version": "v1", "kind": "Pod"}]));
        assert_eq!(pod["properties"]["spec"]["$ref"], "#/definitions/io.k8s.api.core.v1.PodSpec");
        assert!(pod.get("required").is_none());
        // kubectl's v2 field-validation check: the PATCH of a kind lists `fieldValidation`.
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        // Operation ids are unique (the same kind name in two groups: core and events.k8s.io Event).
        let mut ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|i| METHODS.iter().filter_map(move |m| i.get(*m)))
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert!(ids.contains(&"createEventsV1NamespacedEvent") && ids.contains(&"createCoreV1NamespacedEvent"));
    }
}
