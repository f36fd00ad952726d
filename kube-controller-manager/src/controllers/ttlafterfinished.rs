//! `ttl-after-finished`: deletes finished Jobs `spec.ttlSecondsAfterFinished` after they finished, as upstream's
//! `pkg/controller/ttlafterfinished`.
//!
//! A Job with the TTL set and a `Complete` or `Failed` condition with status True expires at that condition's
//! `lastTransitionTime` plus the TTL; until then it is requeued for the time left. When it has expired, the Job is
//! read again live and checked again (the TTL may have been changed), then deleted with
//! `propagationPolicy: Foreground` (as upstream: its pods go first, through the garbage collector) and a uid
//! precondition. Jobs being deleted are left alone.
//!
//! Deliberate gaps: no `job_deletion_duration_seconds` metric.

use std::sync::Arc;
use std::time::Duration;

use runtime::{Action, Controller, Notification};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{BoxError, Context, stopped};

/// When the Job finished (its Complete/Failed condition's transition), if it did.
pub fn finished_at(job: &Value) -> Option<Result<jiff::Timestamp, String>> {
    let conds = job.pointer("/status/conditions").and_then(Value::as_array)?;
    let c = conds.iter().find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")?;
    Some(
        c.get("lastTransitionTime")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("unable to find the time when the Job {} finished", runtime::object_key(job)))
            .and_then(|t| t.parse::<jiff::Timestamp>().map_err(|e| format!("job {}: {e}", runtime::object_key(job)))),
    )
}

fn ttl(job: &Value) -> Option<i64> {
    job.pointer("/spec/ttlSecondsAfterFinished").and_then(Value::as_i64)
}

/// Upstream's `needsCleanup`: a TTL and finished, and not already being deleted.
pub fn needs_cleanup(job: &Value) -> bool {
    job.pointer("/metadata/deletionTimestamp").is_none() && ttl(job).is_some() && finished_at(job).is_some()
}

/// The time left before the Job expires (zero or negative: expired); None when it needs no cleanup.
pub fn time_left(job: &Value, now: jiff::Timestamp) -> Result<Option<jiff::SignedDuration>, String> {
    if !needs_cleanup(job) {
        return Ok(None);
    }
    let (Some(ttl), Some(finished)) = (ttl(job), finished_at(job)) else { return Ok(None) };
    let expire = finished? + jiff::SignedDuration::from_secs(ttl);
    Ok(Some(expire.duration_since(now)))
}

async fn sync(ctx: &Context, job: &Value) -> Result<Action, BoxError> {
    let Some(left) = time_left(job, jiff::Timestamp::now())? else { return Ok(Action::Done) };
    if left.is_positive() {
        return Ok(Action::RequeueAfter(Duration::try_from(left).unwrap_or(Duration::from_secs(1))));
    }
    let api = ctx.api("batch", "v1", "jobs").namespaced(runtime::namespace(job));
    // The cached Job may be stale (its TTL changed): check the live one again.
    let fresh = match api.get(runtime::name(job)).await {
        Ok(j) => j,
        Err(e) if e.code() == Some(404) => return Ok(Action::Done),
        Err(e) => return Err(e.into()),
    };
    let Some(left) = time_left(&fresh, jiff::Timestamp::now())? else { return Ok(Action::Done) };
    if left.is_positive() {
        return Ok(Action::RequeueAfter(Duration::try_from(left).unwrap_or(Duration::from_secs(1))));
    }
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground",
        "preconditions": {"uid": runtime::uid(&fresh)}});
    tracing::info!(job = %runtime::object_key(&fresh), "ttl-after-finished: cleaning up the Job");
    match api.delete(runtime::name(&fresh), Some(&opts)).await {
        Ok(_) => Ok(Action::Done),
        Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(Action::Done),
        Err(e) => Err(e.into()),
    }
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let jobs = ctx.informer("batch", "v1", "jobs");
    let c = ctx.clone();
    let workers = ctx.options.concurrent_ttl_after_finished_syncs;
    Controller::new(runtime::controller::Config { workers, ..Default::default() })
        .watches(&jobs, |n| match n {
            Notification::Deleted(_) => vec![],
            _ if needs_cleanup(n.object()) => vec![n.key()],
            _ => vec![],
        })
        .run(
            move |key: String| {
                let (c, jobs) = (c.clone(), jobs.clone());
                async move {
                    let Some(job) = jobs.store().get_by_key(&key) else { return Ok::<_, BoxError>(Action::Done) };
                    sync(&c, &job).await
                }
            },
            stopped(stop),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(ttl: Option<i64>, cond: Option<(&str, &str)>) -> Value {
        let mut j = json!({"metadata": {"name": "j", "namespace": "ns"}, "spec": {}, "status": {}});
        if let Some(t) = ttl {
            j["spec"]["ttlSecondsAfterFinished"] = json!(t);
        }
        if let Some((ty, status)) = cond {
            j["status"]["conditions"] =
                json!([{"type": ty, "status": status, "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
        }
        j
    }

    #[test]
    fn expiry_from_the_finish_condition() {
        let now: jiff::Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
        assert_eq!(time_left(&job(None, Some(("Complete", "True"))), now), Ok(None));
        assert_eq!(time_left(&job(Some(10), None), now), Ok(None));
        assert_eq!(time_left(&job(Some(10), Some(("Complete", "False"))), now), Ok(None));
        assert_eq!(
            time_left(&job(Some(100), Some(("Complete", "True"))), now),
            Ok(Some(jiff::SignedDuration::from_secs(70)))
        );
        assert_eq!(
            time_left(&job(Some(10), Some(("Failed", "True"))), now),
            Ok(Some(jiff::SignedDuration::from_secs(-20)))
        );
        let mut deleting = job(Some(0), Some(("Complete", "True")));
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(time_left(&deleting, now), Ok(None));
    }
}
