//! End-to-end authentication with the real binary and kubectl: service-account tokens from TokenRequest
//! (`kubectl create token`), bound tokens dying with their object, audiences, TokenReview, bootstrap tokens, OIDC
//! discovery and impersonation (`kubectl --as`).

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use support::Apiserver;

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// `kubectl auth whoami -o json` with a bearer token: Ok(userInfo) or Err(stderr).
fn whoami(s: &Apiserver, token: &str) -> Result<Value, String> {
    let out = s.kubectl_token(token, &["auth", "whoami", "-o", "json"]);
    if out.status.success() {
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Ok(v["status"]["userInfo"].clone())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn eventually_refused(s: &Apiserver, token: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match whoami(s, token) {
            Err(e) => {
                assert!(e.contains("Unauthorized"), "{what}: {e}");
                return;
            }
            Ok(u) if Instant::now() > deadline => panic!("{what}: the token still authenticates as {u}"),
            Ok(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn kubectl_create_token_and_bound_tokens() {
    let s = Apiserver::start();
    s.ok(&["create", "serviceaccount", "robot"]);
    let token = s.ok(&["create", "token", "robot"]).trim().to_string();
    let c = claims(&token);
    assert_eq!(c["iss"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(c["aud"], json!(["https://kubernetes.default.svc.cluster.local"]));
    assert_eq!(c["sub"], "system:serviceaccount:default:robot");
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 3600);
    assert_eq!(c["nbf"], c["iat"]);
    let sa = s.json(&["get", "serviceaccount", "robot"]);
    assert_eq!(c["kubernetes.io"]["serviceaccount"], json!({"name": "robot", "uid": sa["metadata"]["uid"]}));
    let u = whoami(&s, &token).unwrap();
    assert_eq!(u["username"], "system:serviceaccount:default:robot");
    assert_eq!(u["uid"], sa["metadata"]["uid"]);
    assert_eq!(
        u["groups"],
        json!(["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"])
    );
    assert_eq!(
        u["extra"]["authentication.kubernetes.io/credential-id"],
        json!([format!("JTI={}", c["jti"].as_str().unwrap())])
    );

    // --duration, and upstream's floor of ten minutes.
    let short = s.ok(&["create", "token", "robot", "--duration=15m"]).trim().to_string();
    let c = claims(&short);
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 900);
    let err = s.fails(&["create", "token", "robot", "--duration=5m"]);
    assert!(err.contains("may not specify a duration less than 10 minutes"), "{err}");
    let err = s.fails(&["create", "token", "nobody"]);
    assert!(err.contains(r#"serviceaccounts "nobody" not found"#), "{err}");

    // Bound to a pod: the pod's name and uid are in the token and the user's extra; deleting the pod kills it.
    s.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  serviceAccountName: robot\n  containers: [{name: c, image: busybox}]\n");
    let pod = s.json(&["get", "pod", "p"]);
    let bound =
        s.ok(&["create", "token", "robot", "--bound-object-kind=Pod", "--bound-object-name=p"]).trim().to_string();
    let c = claims(&bound);
    assert_eq!(c["kubernetes.io"]["pod"], json!({"name": "p", "uid": pod["metadata"]["uid"]}));
    let u = whoami(&s, &bound).unwrap();
    assert_eq!(u["extra"]["authentication.kubernetes.io/pod-name"], json!(["p"]));
    assert_eq!(u["extra"]["authentication.kubernetes.io/pod-uid"], json!([pod["metadata"]["uid"]]));
    let err = s.fails(&[
        "create",
        "token",
        "robot",
        "--bound-object-kind=Pod",
        "--bound-object-name=p",
        "--bound-object-uid=wrong",
    ]);
    assert!(err.contains("does not match the UID in record"), "{err}");
    s.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: other}\nspec:\n  containers: [{name: c, image: busybox}]\n");
    let err = s.fails(&["create", "token", "robot", "--bound-object-kind=Pod", "--bound-object-name=other"]);
    assert!(err.contains("pod running with different serviceaccount name"), "{err}");
    s.ok(&["delete", "pod", "p", "--grace-period=0", "--force"]);
    eventually_refused(&s, &bound, "a token bound to a deleted pod");
    // A secret-bound token dies with its secret.
    s.ok(&["create", "secret", "generic", "sec", "--from-literal=a=b"]);
    let to_secret =
        s.ok(&["create", "token", "robot", "--bound-object-kind=Secret", "--bound-object-name=sec"]).trim().to_string();
    assert!(whoami(&s, &to_secret).is_ok());
    s.ok(&["delete", "secret", "sec"]);
    eventually_refused(&s, &to_secret, "a token bound to a deleted secret");

    // Another audience: not valid for the API, valid in a TokenReview that asks for it.
    let foo = s.ok(&["create", "token", "robot", "--audience=foo"]).trim().to_string();
    assert!(whoami(&s, &foo).unwrap_err().contains("Unauthorized"));
    let review = |token: &str, audiences: Value| -> Value {
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": audiences}});
        // TokenReview is not in the served OpenAPI yet (kubectl validation then wants /openapi/v2).
        let out = s.ok_stdin(&["create", "--validate=false", "-f", "-", "-o", "json"], &body.to_string());
        serde_json::from_str::<Value>(&out).unwrap()["status"].clone()
    };
    let st = review(&foo, json!(["foo"]));
    assert_eq!(st["authenticated"], true, "{st}");
    assert_eq!(st["audiences"], json!(["foo"]));
    assert_eq!(st["user"]["username"], "system:serviceaccount:default:robot");
    let st = review(&foo, json!(["bar"]));
    assert_ne!(st["authenticated"], true, "{st}");
    assert!(st["error"].as_str().unwrap().contains("audiences"), "{st}");
    let st = review(&token, json!([]));
    assert_eq!(st["authenticated"], true, "{st}");
    let st = review("garbage", json!([]));
    assert_ne!(st["authenticated"], true);

    // Deleting the service account invalidates every token it had; recreating it does not revive them (uid).
    s.ok(&["delete", "serviceaccount", "robot"]);
    eventually_refused(&s, &token, "a token of a deleted service account");
    s.ok(&["create", "serviceaccount", "robot"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(whoami(&s, &token).is_err(), "a recreated service account has another uid");
}

#[test]
fn bootstrap_tokens_authenticate_until_they_expire() {
    let s = Apiserver::start();
    let secret = |id: &str, secret: &str, expiration: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: bootstrap-token-{id}, namespace: kube-system}}\ntype: bootstrap.kubernetes.io/token\nstringData:\n  token-id: {id}\n  token-secret: {secret}\n  usage-bootstrap-authentication: \"true\"\n  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token\n  expiration: \"{expiration}\"\n"
        )
    };
    s.apply(&secret("abcdef", "0123456789abcdef", "2999-01-01T00:00:00Z"));
    let u = whoami(&s, "abcdef.0123456789abcdef").unwrap();
    assert_eq!(u["username"], "system:bootstrap:abcdef");
    assert_eq!(
        u["groups"],
        json!(["system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:authenticated"])
    );
    assert!(whoami(&s, "abcdef.0123456789abcdee").unwrap_err().contains("Unauthorized"));
    s.apply(&secret("old000", "0123456789abcdef", "2001-01-01T00:00:00Z"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(whoami(&s, "old000.0123456789abcdef").unwrap_err().contains("Unauthorized"));
    s.ok(&["delete", "secret", "-n", "kube-system", "bootstrap-token-abcdef"]);
    eventually_refused(&s, "abcdef.0123456789abcdef", "a deleted bootstrap token");
}

#[test]
fn oidc_discovery_publishes_the_signing_key() {
    let s = Apiserver::start();
    let conf: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/.well-known/openid-configuration"])).unwrap();
    assert_eq!(conf["issuer"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(conf["jwks_uri"], "https://kubernetes.default.svc.cluster.local/openid/v1/jwks");
    assert_eq!(conf["response_types_supported"], json!(["id_token"]));
    assert_eq!(conf["subject_types_supported"], json!(["public"]));
    assert_eq!(conf["id_token_signing_alg_values_supported"], json!(["ES256"]));
    let jwks: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["use"].as_str()),
        (Some("EC"), Some("P-256"), Some("sig"))
    );
    s.ok(&["create", "serviceaccount", "robot"]);
    let token = s.ok(&["create", "token", "robot"]).trim().to_string();
    assert_eq!(header(&token)["kid"], key["kid"]);
    assert_eq!(header(&token)["alg"], "ES256");
}

#[test]
fn impersonation_with_kubectl_as() {
    let s = Apiserver::start();
    let who: Value =
        serde_json::from_str(&s.ok(&["--as=bob", "--as-group=devs", "auth", "whoami", "-o", "json"])).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "bob");
    assert_eq!(who["status"]["userInfo"]["groups"], json!(["devs", "system:authenticated"]));
    let who: Value =
        serde_json::from_str(&s.ok(&["--as=system:serviceaccount:kube-system:x", "auth", "whoami", "-o", "json"]))
            .unwrap();
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        json!(["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"])
    );
    let who: Value = serde_json::from_str(&s.ok(&["--as=bob", "--as-uid=42", "auth", "whoami", "-o", "json"])).unwrap();
    assert_eq!(who["status"]["userInfo"]["uid"], "42");
}

#[test]
fn pods_get_their_service_account_and_token_volume() {
    let s = Apiserver::start_with(&["--enable-admission-plugins=ServiceAccount"]);
    let pod = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{extra}  containers: [{{name: c, image: busybox}}]\n"
        )
    };
    // No `default` account yet (no controller-manager here): refused as upstream.
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &pod("p", ""));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"pods "p" is forbidden: error looking up service account default/default: serviceaccount "default" not found"#),
        "{err}"
    );
    s.ok(&["create", "serviceaccount", "default"]);
    s.apply(&pod("p", ""));
    let p = s.json(&["get", "pod", "p"]);
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    assert_eq!(p["spec"]["serviceAccount"], "default");
    let vol = &p["spec"]["volumes"][0];
    let name = vol["name"].as_str().unwrap();
    assert!(name.starts_with("kube-api-access-"), "{vol}");
    assert_eq!(
        vol["projected"],
        json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]})
    );
    assert_eq!(
        p["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}])
    );
    s.apply(&pod("no-token", "  automountServiceAccountToken: false\n"));
    assert!(s.json(&["get", "pod", "no-token"])["spec"].get("volumes").is_none());
    s.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: quiet}\nautomountServiceAccountToken: false\n");
    s.apply(&pod("quiet", "  serviceAccountName: quiet\n"));
    assert!(s.json(&["get", "pod", "quiet"])["spec"].get("volumes").is_none());
}
