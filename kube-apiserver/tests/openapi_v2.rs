//! `/openapi/v2` end to end. kubectl reads the v2 document (as gnostic protobuf) whenever the v3 one has no PATCH
//! operation for a kind (TokenReview, the access reviews), and then validates such objects on the client against
//! it; older clients (kubectl <= 1.26, Helm, client-go's `OpenAPISchema()`) read only v2. The protobuf body is
//! checked against gnostic's own message definition with `protoc`.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use kube_apiserver::testing::TestApiserver;
use serde_json::Value;
use support::Apiserver;

const PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn kubectl_validates_kinds_without_patch_through_v2() {
    let s = Apiserver::start();
    // No PATCH for TokenReview in v3: kubectl falls back to /openapi/v2, then validates on the client.
    let out = s.kubectl(&["create", "-f", &data("tokenreview.json"), "-o", "json", "-v=6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.lines().any(|l| l.contains("url=\"https://127.0.0.1:")
            && l.contains("/openapi/v2?timeout=")
            && l.contains("200 OK")),
        "{log}"
    );
    let review: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(review["status"]["authenticated"], true);
    assert_eq!(review["status"]["user"]["username"], "token-user");

    // An unknown field is refused by kubectl itself (the request never reaches the server), with upstream's text.
    for validate in ["--validate=strict", "--validate=true"] {
        let err = s.fails(&[validate, "create", "-f", &data("tokenreview-unknown-field.json")]);
        assert!(
            err.contains("error validating data: ValidationError(TokenReview.spec): unknown field \"tokn\" in io.k8s.api.authentication.v1.TokenReviewSpec"),
            "{err}"
        );
    }
    // A wrong type too.
    let out = s.kubectl_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": {"verb": ["get"]}}}"#,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ValidationError(SelfSubjectAccessReview.spec.resourceAttributes.verb): invalid type for io.k8s.api.authorization.v1.ResourceAttributes.verb: got \"array\", expected \"string\""), "{}", stderr(&out));
    // Without metadata (upstream does not require it of these kinds) and valid: created.
    let out = s.kubectl_stdin(
        &["create", "-f", "-", "-o", "json"],
        r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}}"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let review: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(review["status"]["allowed"], true);
}

#[test]
fn kubectl_reads_the_document_and_explains() {
    let s = Apiserver::start();
    for path in ["/openapi/v2", "/openapi/v2?timeout=32s"] {
        let doc: Value = serde_json::from_str(&s.ok(&["get", "--raw", path])).unwrap();
        assert_eq!(doc["swagger"], "2.0");
        assert_eq!(doc["info"]["title"], "Kubernetes");
        let pod = &doc["definitions"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        assert_eq!(pod["properties"]["spec"]["$ref"], "#/definitions/io.k8s.api.core.v1.PodSpec");
        let post = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"];
        assert_eq!(post["parameters"][0]["schema"]["$ref"], "#/definitions/io.k8s.api.core.v1.Pod");
        assert_eq!(doc["securityDefinitions"]["BearerToken"]["type"], "apiKey");
    }
    // Client-side apply still computes its strategic merge patch from kubectl's own types (the v2 PATCH does not
    // offer strategic merge, which kubectl would otherwise compute from the document): a second apply of the same
    // manifest leaves the live object, server defaults in its containers included, unchanged.
    let deployment = "{\"apiVersion\": \"apps/v1\", \"kind\": \"Deployment\", \"metadata\": {\"name\": \"web\"}, \"spec\": {\"selector\": {\"matchLabels\": {\"app\": \"web\"}}, \"template\": {\"metadata\": {\"labels\": {\"app\": \"web\"}}, \"spec\": {\"containers\": [{\"name\": \"nginx\", \"image\": \"nginx\", \"env\": [{\"name\": \"A\", \"value\": \"1\"}]}]}}}}";
    assert!(s.apply(deployment).contains("deployment.apps/web created"));
    assert!(s.apply(deployment).contains("deployment.apps/web unchanged"));

    let explain = s.ok(&["explain", "pods.spec.containers"]);
    assert!(explain.contains("KIND:") && explain.contains("Pod") && explain.contains("image"), "{explain}");
    let explain = s.ok(&["explain", "tokenreview.spec"]);
    assert!(explain.contains("TokenReview") && explain.contains("token"), "{explain}");
}

/// `protoc --decode` of the body with gnostic's definition, or the error.
fn protoc(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("protoc")
        .arg(format!("-I{}", data("gnostic")))
        .args(args)
        .arg("openapiv2/OpenAPIv2.proto")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("protoc (deploy/install-deps.sh installs it)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "protoc {args:?}: {}", stderr(&out));
    out.stdout
}

async fn get(api: &TestApiserver, accept: &str) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
    let resp = api.client.send_accepting(Method::GET, "/openapi/v2", accept, None).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn protobuf_is_gnostics_document() {
    let api = TestApiserver::start().await;
    let (status, headers, pb) = get(&api, PROTOBUF_ACCEPT).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/com.github.proto-openapi.spec.v2.v1.0+protobuf");
    let etag = headers[header::ETAG].to_str().unwrap().to_string();
    assert!(etag.len() == 130 && etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert!(etag[1..129].bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)), "{etag}");

    // Every field is one gnostic knows (protoc prints unknown ones by number and cannot encode them back), and the
    // bytes are exactly what protobuf itself writes for that document.
    let text = protoc(&["--decode=openapi.v2.Document"], &pb);
    let again = protoc(&["--encode=openapi.v2.Document"], &text);
    assert!(again == pb, "protoc re-encodes the document differently");
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with("swagger: \"2.0\"\ninfo {\n  title: \"Kubernetes\"\n"), "{}", &text[..200]);
    for needle in [
        "name: \"io.k8s.api.core.v1.Pod\"",
        "name: \"x-kubernetes-group-version-kind\"",
        "yaml: \"[{\\\"group\\\":\\\"\\\",\\\"version\\\":\\\"v1\\\",\\\"kind\\\":\\\"Pod\\\"}]\"",
        "query_parameter_sub_schema {",
        "name: \"fieldValidation\"",
        "body_parameter {",
        "api_key_security {",
        "_ref: \"#/definitions/io.k8s.api.core.v1.PodSpec\"",
    ] {
        assert!(text.contains(needle), "protobuf misses {needle}");
    }

    // JSON shares the ETag (the document is the same).
    let (status, headers, json) = get(&api, "application/json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(headers[header::ETAG].to_str().unwrap(), etag);
    let doc: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(doc["swagger"], "2.0");
    let (status, _, _) = get(&api, "text/html").await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    api.stop().await;
}
