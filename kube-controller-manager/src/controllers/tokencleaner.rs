//! `tokencleaner`: deletes expired bootstrap tokens, as upstream's `pkg/controller/bootstrap/tokencleaner.go`.
//!
//! A Secret of type `bootstrap.kubernetes.io/token` in `kube-system` whose `expiration` has passed (or does not
//! parse) is deleted with a uid precondition; one that expires later is looked at again then. Off by default, as
//! upstream.

use std::sync::Arc;

use runtime::{Action, Controller, Notification};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::controllers::bootstrapsigner::{SECRET_TYPE_BOOTSTRAP_TOKEN, TOKEN_NAMESPACE, expiration};
use crate::{BoxError, Context, stopped};

/// What to do with a token Secret (upstream's `evalSecret`).
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Expired: delete it.
    Delete,
    /// Not expired: look again after this long (None: it never expires).
    Keep(Option<std::time::Duration>),
}

pub fn evaluate(secret: &Value, now: jiff::Timestamp) -> Verdict {
    match expiration(secret, now) {
        (_, true) => Verdict::Delete,
        (left, false) if !left.is_zero() => Verdict::Keep(Some(left)),
        _ => Verdict::Keep(None),
    }
}

/// The DeleteOptions upstream sends: a uid precondition when the Secret has a uid.
pub fn delete_options(secret: &Value) -> Option<Value> {
    let uid = runtime::uid(secret);
    (!uid.is_empty()).then(|| json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}}))
}

fn is_token_secret(secret: &Value) -> bool {
    secret["type"] == SECRET_TYPE_BOOTSTRAP_TOKEN && runtime::namespace(secret) == TOKEN_NAMESPACE
}

async fn sync(ctx: &Context, secret: &Value) -> Result<Action, BoxError> {
    match evaluate(secret, jiff::Timestamp::now()) {
        Verdict::Keep(Some(left)) => Ok(Action::RequeueAfter(left)),
        Verdict::Keep(None) => Ok(Action::Done),
        Verdict::Delete => {
            tracing::info!(secret = %runtime::object_key(secret), "tokencleaner: deleting expired secret");
            let api = ctx.api("", "v1", "secrets").namespaced(runtime::namespace(secret));
            match api.delete(runtime::name(secret), delete_options(secret).as_ref()).await {
                Ok(_) => Ok(Action::Done),
                // Already gone, or replaced (the uid precondition failed).
                Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(Action::Done),
                Err(e) => Err(e.into()),
            }
        }
    }
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let secrets = ctx.informer("", "v1", "secrets");
    let c = ctx.clone();
    Controller::new(runtime::controller::Config::default())
        .watches(&secrets, |n| match n {
            Notification::Deleted(_) => vec![],
            _ if is_token_secret(n.object()) => vec![n.key()],
            _ => vec![],
        })
        .run(
            move |key: String| {
                let (c, secrets) = (c.clone(), secrets.clone());
                async move {
                    let Some(secret) = secrets.store().get_by_key(&key) else { return Ok::<_, BoxError>(Action::Done) };
                    if !is_token_secret(&secret) {
                        return Ok(Action::Done);
                    }
                    sync(&c, &secret).await
                }
            },
            stopped(stop),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::controllers::bootstrapsigner::testing::{b64, token_secret};

    fn with_expiration(at: jiff::Timestamp) -> Value {
        let mut s = token_secret("tokenID", "tokenSecret");
        s["data"]["expiration"] = json!(b64(&at.to_string()));
        s
    }

    #[test]
    fn cleans_as_upstreams_tokencleaner_test() {
        let now: jiff::Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let hour = jiff::SignedDuration::from_hours(1);
        // No expiration: kept for good.
        assert_eq!(evaluate(&token_secret("tokenID", "tokenSecret"), now), Verdict::Keep(None));
        // Expired an hour ago: deleted, with its uid as precondition.
        let expired = with_expiration(now - hour);
        assert_eq!(evaluate(&expired, now), Verdict::Delete);
        assert_eq!(
            delete_options(&expired),
            Some(json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "uid-1"}}))
        );
        // Expires in an hour: looked at again then.
        assert_eq!(evaluate(&with_expiration(now + hour), now), Verdict::Keep(Some(Duration::from_secs(3600))));
        // Expires right now: deleted.
        assert_eq!(evaluate(&with_expiration(now), now), Verdict::Delete);
        let mut garbled = token_secret("tokenID", "tokenSecret");
        garbled["data"]["expiration"] = json!(b64("next week"));
        assert_eq!(evaluate(&garbled, now), Verdict::Delete);
    }
}
