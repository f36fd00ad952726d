//! `csrapproving`: approves kubelet client certificate requests their requester may make, as upstream's
//! `pkg/controller/certificates/approver/sarapprove.go`.
//!
//! A request of `kubernetes.io/kube-apiserver-client-kubelet` that is neither approved, denied nor issued, and is
//! a valid kubelet client request (`system:node:<name>` in `system:nodes`, client usages, no SANs), is checked
//! with a SubjectAccessReview for the requester (`spec.username`, `uid`, `groups`, `extra`): `create` on
//! `certificatesigningrequests/selfnodeclient` when the requester is the node itself (renewal), then
//! `certificatesigningrequests/nodeclient` (bootstrap). The first allowed one adds the `Approved` condition
//! (reason `AutoApproved`) through `/approval`; when none is, the request is retried with backoff.

use std::sync::Arc;

use bytes::Bytes;
use runtime::{Action, Controller, Notification};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::controllers::certificates::{self as csrs, Request};
use crate::{BoxError, Context, stopped};

/// One kind of request this approver knows and the permission that approves it.
pub struct Recognizer {
    pub recognize: fn(&Value, &Request) -> bool,
    /// The subresource of `certificatesigningrequests` the requester must be allowed to `create`.
    pub subresource: &'static str,
    pub message: &'static str,
}

/// Upstream's `isNodeClientCert`.
pub fn is_node_client_cert(csr: &Value, req: &Request) -> bool {
    csrs::signer_name(csr) == csrs::KUBE_APISERVER_CLIENT_KUBELET
        && csrs::validate_kubelet_client(req, &csrs::usages(csr)).is_ok()
}

/// Upstream's `isSelfNodeClientCert`: a node client request by the node it names.
pub fn is_self_node_client_cert(csr: &Value, req: &Request) -> bool {
    csr.pointer("/spec/username").and_then(Value::as_str) == Some(req.common_name.as_str())
        && is_node_client_cert(csr, req)
}

/// Upstream's recognizers, in its order.
pub const RECOGNIZERS: [Recognizer; 2] = [
    Recognizer {
        recognize: is_self_node_client_cert,
        subresource: "selfnodeclient",
        message: "Auto approving self kubelet client certificate after SubjectAccessReview.",
    },
    Recognizer {
        recognize: is_node_client_cert,
        subresource: "nodeclient",
        message: "Auto approving kubelet client certificate after SubjectAccessReview.",
    },
];

/// The SubjectAccessReview asking whether the CSR's requester may `create` the subresource.
pub fn access_review(csr: &Value, subresource: &str) -> Value {
    let spec = |k: &str| csr.pointer(&format!("/spec/{k}")).cloned();
    let mut review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": spec("username").unwrap_or(json!("")),
            "resourceAttributes": {"group": "certificates.k8s.io", "resource": "certificatesigningrequests",
                "verb": "create", "subresource": subresource}}});
    for k in ["uid", "groups", "extra"] {
        if let Some(v) = spec(k).filter(|v| !v.is_null()) {
            review["spec"][k] = v;
        }
    }
    review
}

/// Upstream's `handle`: the CSR with its approval added, None when there is nothing to approve, an error when it
/// was recognized but no review allowed it. `authorize(review)` answers a SubjectAccessReview (`status.allowed`).
pub async fn handle<F, Fut>(csr: &Value, recognizers: &[Recognizer], authorize: F) -> Result<Option<Value>, BoxError>
where
    F: Fn(Value) -> Fut,
    Fut: Future<Output = Result<bool, BoxError>>,
{
    if csrs::certificate(csr).is_some() {
        return Ok(None);
    }
    if let (true, _) | (_, true) = csrs::approval(csr) {
        return Ok(None);
    }
    let req = csrs::parse_request(csr).map_err(|e| format!("unable to parse csr {:?}: {e}", runtime::name(csr)))?;
    let mut tried = Vec::new();
    for r in recognizers {
        if !(r.recognize)(csr, &req) {
            continue;
        }
        tried.push(r.subresource);
        if authorize(access_review(csr, r.subresource)).await? {
            let mut approved = csr.clone();
            let mut conditions = runtime::array(csr, "/status/conditions").to_vec();
            conditions.push(csrs::condition("Approved", "AutoApproved", r.message));
            approved["status"]["conditions"] = json!(conditions);
            return Ok(Some(approved));
        }
    }
    if !tried.is_empty() {
        return Err(format!(
            "recognized csr {:?} as [{}] but subject access review was not approved",
            runtime::name(csr),
            tried.join(" ")
        )
        .into());
    }
    Ok(None)
}

async fn authorize(ctx: &Context, review: Value) -> Result<bool, BoxError> {
    let review = ctx.api("authorization.k8s.io", "v1", "subjectaccessreviews").create(&review).await?;
    Ok(review.pointer("/status/allowed").and_then(Value::as_bool).unwrap_or(false))
}

async fn sync(ctx: &Context, csr: &Value) -> Result<Action, BoxError> {
    let Some(approved) = handle(csr, &RECOGNIZERS, |review| authorize(ctx, review)).await? else {
        return Ok(Action::Done);
    };
    let path = format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{}/approval", runtime::name(csr));
    let body = Bytes::from(serde_json::to_vec(&approved)?);
    match ctx.client.request(http::Method::PUT, &path, Some((body, "application/json"))).await {
        Ok(_) => {
            tracing::info!(csr = runtime::name(csr), "csrapproving: approved");
            Ok(Action::Done)
        }
        Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(Action::Done),
        Err(e) => Err(format!("error updating approval for csr: {e}").into()),
    }
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let csrs = ctx.informer("certificates.k8s.io", "v1", "certificatesigningrequests");
    let c = ctx.clone();
    Controller::new(runtime::controller::Config { workers: 5, ..Default::default() })
        .watches(&csrs, |n| match n {
            Notification::Deleted(_) => vec![],
            _ => vec![n.key()],
        })
        .run(
            move |key: String| {
                let (c, csrs) = (c.clone(), csrs.clone());
                async move {
                    let Some(csr) = csrs.store().get_by_key(&key) else { return Ok::<_, BoxError>(Action::Done) };
                    sync(&c, &csr).await
                }
            },
            stopped(stop),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::controllers::certificates::testing::{RequestBuilder, node_client};

    const CLIENT: [&str; 3] = ["key encipherment", "digital signature", "client auth"];

    fn yes(_: &Value, _: &Request) -> bool {
        true
    }

    fn no(_: &Value, _: &Request) -> bool {
        false
    }

    fn recognizer(recognized: bool) -> [Recognizer; 1] {
        [Recognizer { recognize: if recognized { yes } else { no }, subresource: "baz", message: "tester" }]
    }

    #[tokio::test]
    async fn handle_as_upstream() {
        let csr = RequestBuilder { cn: "test-cert".into(), ..Default::default() }.csr("", &[]);
        for (recognized, allowed) in [(false, false), (false, true), (true, false), (true, true)] {
            let reviews = AtomicUsize::new(0);
            let authorize = |review: Value| {
                reviews.fetch_add(1, Ordering::SeqCst);
                assert_eq!(review["spec"]["resourceAttributes"]["subresource"], "baz");
                async move { Ok::<_, BoxError>(allowed) }
            };
            let result = handle(&csr, &recognizer(recognized), authorize).await;
            let calls = reviews.load(Ordering::SeqCst);
            match (recognized, allowed) {
                (false, _) => {
                    assert_eq!(calls, 0);
                    assert!(result.unwrap().is_none());
                }
                (true, false) => {
                    assert_eq!(calls, 1);
                    assert_eq!(
                        result.unwrap_err().to_string(),
                        r#"recognized csr "csr" as [baz] but subject access review was not approved"#
                    );
                }
                (true, true) => {
                    assert_eq!(calls, 1);
                    let approved = result.unwrap().unwrap();
                    let conds = runtime::array(&approved, "/status/conditions");
                    assert_eq!(conds.len(), 1);
                    assert_eq!(conds[0]["type"], "Approved");
                    assert_eq!(conds[0]["status"], "True");
                    assert_eq!(conds[0]["reason"], "AutoApproved");
                    assert_eq!(conds[0]["message"], "tester");
                }
            }
        }
    }

    #[tokio::test]
    async fn decided_or_issued_requests_are_left_alone() {
        let base = RequestBuilder { cn: "test-cert".into(), ..Default::default() }.csr("", &[]);
        for status in [
            json!({"conditions": [{"type": "Approved", "status": "True"}]}),
            json!({"conditions": [{"type": "Denied", "status": "True"}]}),
            json!({"certificate": "Y2VydA=="}),
        ] {
            let mut csr = base.clone();
            csr["status"] = status;
            let result = handle(&csr, &recognizer(true), |_| async { panic!("no review") }).await;
            assert!(result.unwrap().is_none());
        }
    }

    fn builder_with(f: impl Fn(&mut RequestBuilder, &mut String, &mut Vec<&'static str>)) -> Value {
        let mut b = node_client("system:node:foo");
        let mut requester = "system:node:foo".to_string();
        let mut usages = CLIENT.to_vec();
        f(&mut b, &mut requester, &mut usages);
        let mut csr = b.csr(csrs::KUBE_APISERVER_CLIENT_KUBELET, &usages);
        csr["spec"]["username"] = json!(requester);
        csr
    }

    #[test]
    fn recognizers_as_upstream() {
        let check = |csr: &Value, node: bool, self_node: bool| {
            let req = csrs::parse_request(csr).unwrap();
            assert_eq!(is_node_client_cert(csr, &req), node, "{csr}");
            assert_eq!(is_self_node_client_cert(csr, &req), self_node, "{csr}");
        };
        check(&builder_with(|_, _, _| {}), true, true);
        check(&builder_with(|b, _, _| b.cn = "mike".into()), false, false);
        check(&builder_with(|b, _, _| b.orgs = vec![]), false, false);
        check(&builder_with(|b, _, _| b.orgs = vec!["system:master".into()]), false, false);
        check(&builder_with(|_, _, u| u.push("server auth")), false, false);
        // Another requester than the node: a bootstrap request, not a renewal.
        check(&builder_with(|_, r, _| *r = "joe".into()), true, false);
        check(&builder_with(|b, _, _| b.cn = "system:node:bar".into()), true, false);
        // Another signer.
        let mut other = builder_with(|_, _, _| {});
        other["spec"]["signerName"] = json!(csrs::KUBE_APISERVER_CLIENT);
        check(&other, false, false);
    }

    #[test]
    fn the_review_carries_the_requester() {
        let mut csr = builder_with(|_, _, _| {});
        csr["spec"]["uid"] = json!("u-1");
        csr["spec"]["groups"] = json!(["system:bootstrappers", "system:authenticated"]);
        csr["spec"]["extra"] = json!({"k": ["v"]});
        let review = access_review(&csr, "nodeclient");
        assert_eq!(
            review["spec"],
            json!({"user": "system:node:foo", "uid": "u-1",
                "groups": ["system:bootstrappers", "system:authenticated"], "extra": {"k": ["v"]},
                "resourceAttributes": {"group": "certificates.k8s.io", "resource": "certificatesigningrequests",
                    "verb": "create", "subresource": "nodeclient"}})
        );
        assert_eq!(RECOGNIZERS[1].message, "Auto approving kubelet client certificate after SubjectAccessReview.");
    }
}
