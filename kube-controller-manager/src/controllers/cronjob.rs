//! `cronjob`: creates a CronJob's Jobs on its schedule, as upstream's pkg/controller/cronjob (the v2 controller).
//!
//! - The schedule is the standard 5-field cron syntax (robfig/cron's standard parser, as upstream): `*`, `?`,
//!   ranges `a-b`, steps `*/n` and `a-b/n` and `a/n`, lists, month and weekday names, and the descriptors
//!   `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`; day-of-month and day-of-week
//!   are OR-ed when both are restricted. `spec.timeZone` is looked up in jiff's time-zone database (UTC
//!   otherwise).
//! - The Job for a schedule time is `<cronjob>-<minutes since the epoch>`, from `spec.jobTemplate`, with the
//!   `batch.kubernetes.io/cronjob-scheduled-timestamp` annotation (RFC 3339 in the time zone) and a controllerRef.
//! - Only the most recent missed schedule runs; with `startingDeadlineSeconds` one older than the deadline is
//!   skipped (`MissSchedule`); more than 100 missed schedules give upstream's `TooManyMissedTimes` warning.
//! - `concurrencyPolicy`: `Allow`, `Forbid` (`JobAlreadyActive`), `Replace` (the active Jobs are deleted first).
//! - `suspend` stops new Jobs; finished Jobs leave `status.active` (`SawCompletedJob`), `lastSuccessfulTime`
//!   follows the Complete ones, and the oldest beyond `successfulJobsHistoryLimit`/`failedJobsHistoryLimit` are
//!   deleted (`SuccessfulDelete`).
//! - The CronJob is requeued for its next schedule time.
//!
//! Deliberate gaps: `@every` is not accepted (upstream rejects it in validation too, except as a descriptor it
//! tolerates); a schedule that cannot be parsed or an unknown time zone only gives a warning event.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use runtime::events::{EventType, Recorder};
use runtime::{Action, Controller, Informer};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::controllers::job::{controller_key, finished, parse_time};
use crate::{BoxError, Context, stopped};

pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
const OWNER_INDEX: &str = "cronjob-controller/owner";

/// A parsed cron schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(s: &str, names: &[&str], offset: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + offset);
    }
    s.parse::<u32>().map_err(|_| format!("failed to parse int from {s}"))
}

/// One comma-separated field: returns its bits and whether it was a star (robfig's starBit).
fn field(expr: &str, min: u32, max: u32, names: &[&str], offset: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s.parse::<u32>().map_err(|_| format!("failed to parse int from {s}"))?)),
            None => (part, None),
        };
        let (lo, mut hi, mut this_star) = if range == "*" || range == "?" {
            (min, max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, offset)?, value(b, names, offset)?, false)
        } else {
            let v = value(range, names, offset)?;
            (v, v, false)
        };
        if let Some(step) = step {
            if step == 0 {
                return Err(format!("step of range should be a positive number: {part}"));
            }
            // `N/step` means `N-max/step`.
            if !this_star && !range.contains('-') {
                hi = max;
            }
            if step > 1 {
                this_star = false;
            }
            if lo < min || hi > max || lo > hi {
                return Err(format!("end of range ({hi}) above maximum ({max}): {part}"));
            }
            let mut v = lo;
            while v <= hi {
                bits |= 1 << v;
                v += step;
            }
        } else {
            if lo < min {
                return Err(format!("beginning of range ({lo}) below minimum ({min}): {part}"));
            }
            if hi > max {
                return Err(format!("end of range ({hi}) above maximum ({max}): {part}"));
            }
            if lo > hi {
                return Err(format!("beginning of range ({lo}) beyond end of range ({hi}): {part}"));
            }
            for v in lo..=hi {
                bits |= 1 << v;
            }
        }
        star |= this_star;
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a standard cron spec (5 fields or a descriptor).
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!("expected exactly 5 fields, found {}: {spec}", fields.len()));
        }
        let (minute, _) = field(fields[0], 0, 59, &[], 0)?;
        let (hour, _) = field(fields[1], 0, 23, &[], 0)?;
        let (dom, dom_star) = field(fields[2], 1, 31, &[], 0)?;
        let (month, _) = field(fields[3], 1, 12, &MONTHS, 1)?;
        let (dow, dow_star) = field(fields[4], 0, 6, &DAYS, 0)?;
        Ok(Schedule { minute, hour, dom, month, dow, dom_star, dow_star })
    }

    fn day_matches(&self, dt: &DateTime) -> bool {
        let dom = self.dom & (1 << dt.day()) != 0;
        let dow = self.dow & (1 << dt.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star { dom && dow } else { dom || dow }
    }

    /// The first schedule time strictly after `t`, in the time zone `tz` (None within 5 years: never).
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = t.to_zoned(tz.clone()).datetime();
        let mut dt = start.date().at(start.hour(), start.minute(), 0, 0).checked_add(Span::new().minutes(1)).ok()?;
        let limit = start.year() + 5;
        while dt.year() <= limit {
            if self.month & (1 << dt.month()) == 0 {
                dt = dt.date().first_of_month().checked_add(Span::new().months(1)).ok()?.at(0, 0, 0, 0);
                continue;
            }
            if !self.day_matches(&dt) {
                dt = dt.date().checked_add(Span::new().days(1)).ok()?.at(0, 0, 0, 0);
                continue;
            }
            if self.hour & (1 << dt.hour()) == 0 {
                dt = dt.date().at(dt.hour(), 0, 0, 0).checked_add(Span::new().hours(1)).ok()?;
                continue;
            }
            if self.minute & (1 << dt.minute()) == 0 {
                dt = dt.checked_add(Span::new().minutes(1)).ok()?;
                continue;
            }
            let ts = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
            if ts > t {
                return Some(ts);
            }
            dt = dt.checked_add(Span::new().minutes(1)).ok()?;
        }
        None
    }

    /// The most recent schedule time in `(earliest, now]` and how many there are (counting stops past 101).
    pub fn most_recent(&self, earliest: Timestamp, now: Timestamp, tz: &TimeZone) -> (Option<Timestamp>, usize) {
        let mut count = 0;
        let mut last = None;
        let mut t = earliest;
        while let Some(next) = self.next_after(t, tz).filter(|n| *n <= now) {
            count += 1;
            last = Some(next);
            t = next;
            if count > 100 {
                break;
            }
        }
        if count <= 100 {
            return (last, count);
        }
        // Many missed: look back from now in growing windows for the latest one.
        let mut window = jiff::SignedDuration::from_hours(1);
        loop {
            let from = (now - window).max(earliest);
            let mut t = from;
            let mut found = None;
            while let Some(next) = self.next_after(t, tz).filter(|n| *n <= now) {
                found = Some(next);
                t = next;
            }
            if found.is_some() || from == earliest {
                return (found.or(last), count);
            }
            window *= 2;
        }
    }
}

/// The Job name for a schedule time: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The Job of a CronJob for a schedule time.
pub fn job_for(cj: &Value, scheduled: Timestamp, tz: &TimeZone) -> Value {
    let template = cj.pointer("/spec/jobTemplate").cloned().unwrap_or(json!({}));
    let mut meta = json!({});
    for k in ["labels", "annotations"] {
        meta[k] = template.pointer(&format!("/metadata/{k}")).cloned().filter(Value::is_object).unwrap_or(json!({}));
    }
    let stamp = scheduled.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    let stamp = stamp.strip_suffix("+00:00").map(|s| format!("{s}Z")).unwrap_or(stamp);
    meta["annotations"][SCHEDULED_TIMESTAMP] = json!(stamp);
    meta["name"] = json!(job_name(runtime::name(cj), scheduled));
    meta["namespace"] = json!(runtime::namespace(cj));
    meta["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": runtime::name(cj),
        "uid": runtime::uid(cj), "controller": true, "blockOwnerDeletion": true}]);
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or(json!({}))})
}

fn job_ref(job: &Value) -> Value {
    json!({"kind": "Job", "apiVersion": "batch/v1", "namespace": runtime::namespace(job),
        "name": runtime::name(job), "uid": runtime::uid(job), "resourceVersion": runtime::resource_version(job)})
}

struct CronJobs {
    ctx: Arc<Context>,
    cronjobs: Informer,
    jobs: Informer,
    recorder: Recorder,
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let cronjobs = ctx.informer("batch", "v1", "cronjobs");
    let jobs = ctx.informer("batch", "v1", "jobs");
    jobs.store().add_indexer(OWNER_INDEX, |j| controller_key(j, "CronJob").into_iter().collect());
    let this = Arc::new(CronJobs {
        recorder: ctx.recorder("cronjob-controller"),
        ctx,
        cronjobs: cronjobs.clone(),
        jobs: jobs.clone(),
    });
    Controller::new(runtime::controller::Config { workers: 5, ..Default::default() })
        .watches(&cronjobs, |n| vec![n.key()])
        .watches(&jobs, |n| controller_key(n.object(), "CronJob").into_iter().collect())
        .run(
            move |key: String| {
                let this = this.clone();
                async move { this.reconcile(&key).await }
            },
            stopped(stop),
        )
        .await;
}

fn start_time(job: &Value) -> String {
    job.pointer("/status/startTime")
        .or(job.pointer("/metadata/creationTimestamp"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl CronJobs {
    async fn delete_job(&self, cj: &Value, job: &Value) -> Result<bool, BoxError> {
        let api = self.ctx.api("batch", "v1", "jobs").namespaced(runtime::namespace(job));
        match api.delete(runtime::name(job), Some(&json!({"propagationPolicy": "Background"}))).await {
            Ok(_) => {
                let msg = format!("Deleted job {}", runtime::name(job));
                self.recorder.record(cj, EventType::Normal, "SuccessfulDelete", &msg);
                Ok(true)
            }
            Err(e) if e.code() == Some(404) => Ok(true),
            Err(e) => {
                let msg = format!("Deleted job: {e}");
                self.recorder.record(cj, EventType::Warning, "FailedDelete", &msg);
                Err(e.into())
            }
        }
    }

    async fn reconcile(&self, key: &str) -> Result<Action, BoxError> {
        let Some(cj) = self.cronjobs.store().get_by_key(key) else { return Ok(Action::Done) };
        let uid = runtime::uid(&cj).to_string();
        let jobs: Vec<Arc<Value>> =
            self.jobs.store().by_index(OWNER_INDEX, key).into_iter().filter(|j| owned(j, &uid)).collect();
        let old = cj.get("status").cloned().unwrap_or(json!({}));
        let mut status = old.clone();
        let mut active: Vec<Value> = old.get("active").and_then(Value::as_array).cloned().unwrap_or_default();

        // The active list follows the Jobs.
        for j in &jobs {
            let in_active = active.iter().any(|a| a["uid"] == runtime::uid(j));
            match finished(j) {
                None if !in_active => active.push(job_ref(j)),
                Some(cond) if in_active => {
                    active.retain(|a| a["uid"] != runtime::uid(j));
                    let msg = format!("Saw completed job: {}, condition: {cond}", runtime::name(j));
                    self.recorder.record(&cj, EventType::Normal, "SawCompletedJob", &msg);
                }
                _ => {}
            }
            if finished(j) == Some("Complete") {
                let done = j.pointer("/status/completionTime").and_then(Value::as_str).map(str::to_string);
                if let Some(t) = done
                    && parse_time(status.get("lastSuccessfulTime")) < parse_time(Some(&json!(t)))
                {
                    status["lastSuccessfulTime"] = json!(t);
                }
            }
        }
        active.retain(|a| {
            let found = jobs.iter().any(|j| a["uid"] == runtime::uid(j));
            if !found {
                let msg = format!("Active job went missing: {}", a["name"].as_str().unwrap_or_default());
                self.recorder.record(&cj, EventType::Warning, "MissingJob", &msg);
            }
            found
        });

        let mut requeue = None;
        if cj.pointer("/metadata/deletionTimestamp").is_none() {
            // History limits.
            for (cond, limit_field) in
                [("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")]
            {
                let Some(limit) = cj.pointer(&format!("/spec/{limit_field}")).and_then(Value::as_i64) else { continue };
                let mut done: Vec<&Arc<Value>> = jobs.iter().filter(|j| finished(j) == Some(cond)).collect();
                if done.len() as i64 > limit {
                    done.sort_by_key(|j| start_time(j));
                    for j in done.iter().take(done.len() - limit.max(0) as usize) {
                        self.delete_job(&cj, j).await?;
                    }
                }
            }
            requeue = self.schedule(&cj, &mut active, &mut status).await?;
        }

        status["active"] = json!(active);
        if active.is_empty()
            && let Some(o) = status.as_object_mut()
        {
            o.remove("active");
        }
        if status != old {
            let mut updated = (*cj).clone();
            updated["status"] = status;
            let api = self.ctx.api("batch", "v1", "cronjobs").namespaced(runtime::namespace(&cj));
            match api.replace_status(runtime::name(&cj), &updated).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(404) => return Ok(Action::Done),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(requeue.map_or(Action::Done, Action::RequeueAfter))
    }

    /// Starts the Job of the most recent unmet schedule time, if any; returns when to look again.
    async fn schedule(
        &self,
        cj: &Value,
        active: &mut Vec<Value>,
        status: &mut Value,
    ) -> Result<Option<Duration>, BoxError> {
        if cj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
            return Ok(None);
        }
        let spec = cj.pointer("/spec/schedule").and_then(Value::as_str).unwrap_or_default();
        let tz = match cj.pointer("/spec/timeZone").and_then(Value::as_str) {
            None => TimeZone::UTC,
            Some(name) => match TimeZone::get(name) {
                Ok(tz) => tz,
                Err(e) => {
                    let msg = format!("invalid timeZone: {name:?}: {e}");
                    self.recorder.record(cj, EventType::Warning, "UnknownTimeZone", &msg);
                    return Ok(None);
                }
            },
        };
        let sched = match Schedule::parse(spec) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("unparseable schedule: {spec:?} : {e}");
                self.recorder.record(cj, EventType::Warning, "UnparseableSchedule", &msg);
                return Ok(None);
            }
        };
        let now = Timestamp::now();
        let next_in = |after: Timestamp| {
            sched
                .next_after(after.max(now), &tz)
                .map(|n| Duration::try_from(n.duration_since(now)).unwrap_or_default() + Duration::from_millis(100))
        };
        let created = parse_time(cj.pointer("/metadata/creationTimestamp")).unwrap_or(now);
        let mut earliest = parse_time(status.get("lastScheduleTime")).unwrap_or(created);
        let deadline = cj.pointer("/spec/startingDeadlineSeconds").and_then(Value::as_i64);
        if let Some(d) = deadline {
            earliest = earliest.max(now - jiff::SignedDuration::from_secs(d));
        }
        if earliest > now {
            return Ok(next_in(now));
        }
        let (most_recent, missed) = sched.most_recent(earliest, now, &tz);
        if missed > 100 {
            let msg = format!(
                "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
            );
            self.recorder.record(cj, EventType::Warning, "TooManyMissedTimes", &msg);
        }
        let Some(scheduled) = most_recent else { return Ok(next_in(now)) };
        if deadline.is_some_and(|d| scheduled + jiff::SignedDuration::from_secs(d) < now) {
            let msg =
                format!("Missed scheduled time to start a job: {}", scheduled.strftime("%a, %d %b %Y %H:%M:%S %z"));
            self.recorder.record(cj, EventType::Warning, "MissSchedule", &msg);
            return Ok(next_in(now));
        }
        let name = job_name(runtime::name(cj), scheduled);
        if active.iter().any(|a| a["name"] == name.as_str())
            || parse_time(status.get("lastScheduleTime")) == Some(scheduled)
        {
            return Ok(next_in(now));
        }
        match cj.pointer("/spec/concurrencyPolicy").and_then(Value::as_str) {
            Some("Forbid") if !active.is_empty() => {
                let msg = "Not starting job because prior execution is running and concurrency policy is Forbid";
                self.recorder.record(cj, EventType::Normal, "JobAlreadyActive", msg);
                return Ok(next_in(now));
            }
            Some("Replace") => {
                for a in active.clone() {
                    let name = a["name"].as_str().unwrap_or_default();
                    if let Some(j) = self.jobs.store().get(runtime::namespace(cj), name) {
                        self.delete_job(cj, &j).await?;
                    }
                    active.retain(|x| x["uid"] != a["uid"]);
                }
            }
            _ => {}
        }
        let api = self.ctx.api("batch", "v1", "jobs").namespaced(runtime::namespace(cj));
        let job = match api.create(&job_for(cj, scheduled, &tz)).await {
            Ok(j) => {
                let msg = format!("Created job {}", runtime::name(&j));
                self.recorder.record(cj, EventType::Normal, "SuccessfulCreate", &msg);
                j
            }
            Err(e) if e.code() == Some(409) => {
                let j = api.get(&name).await?;
                if !owned(&j, runtime::uid(cj)) || active.iter().any(|a| a["uid"] == runtime::uid(&j)) {
                    return Ok(next_in(now));
                }
                j
            }
            Err(e) => {
                self.recorder.record(cj, EventType::Warning, "FailedCreate", &format!("Error creating job: {e}"));
                return Err(e.into());
            }
        };
        active.push(job_ref(&job));
        status["lastScheduleTime"] = json!(rfc3339(scheduled));
        Ok(next_in(now))
    }
}

fn owned(job: &Value, uid: &str) -> bool {
    job.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|rs| rs.iter().any(|r| r["controller"] == true && r["uid"] == uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str) -> String {
        rfc3339(Schedule::parse(spec).unwrap().next_after(ts(after), &TimeZone::UTC).unwrap())
    }

    #[test]
    fn parses_the_standard_syntax() {
        assert_eq!(next("*/1 * * * *", "2024-01-01T10:00:30Z"), "2024-01-01T10:01:00Z");
        assert_eq!(next("*/15 * * * *", "2024-01-01T10:16:00Z"), "2024-01-01T10:30:00Z");
        assert_eq!(next("5,10-12 * * * *", "2024-01-01T10:10:00Z"), "2024-01-01T10:11:00Z");
        assert_eq!(next("0 9-17/4 * * *", "2024-01-01T10:00:00Z"), "2024-01-01T13:00:00Z");
        assert_eq!(next("30 2 * jan-mar MON", "2024-03-30T00:00:00Z"), "2025-01-06T02:30:00Z");
        assert_eq!(next("@hourly", "2024-01-01T10:00:00Z"), "2024-01-01T11:00:00Z");
        assert_eq!(next("@daily", "2024-01-01T10:00:00Z"), "2024-01-02T00:00:00Z");
        assert_eq!(next("@weekly", "2024-01-01T10:00:00Z"), "2024-01-07T00:00:00Z");
        assert_eq!(next("@monthly", "2024-01-31T10:00:00Z"), "2024-02-01T00:00:00Z");
        assert_eq!(next("@yearly", "2024-01-31T10:00:00Z"), "2025-01-01T00:00:00Z");
        assert_eq!(next("0 0 29 2 *", "2024-03-01T00:00:00Z"), "2028-02-29T00:00:00Z");
        assert_eq!(next("5/20 * * * *", "2024-01-01T10:26:00Z"), "2024-01-01T10:45:00Z");
        // Both day fields restricted: either matches (2024-01-05 is a Friday, the 10th a Wednesday).
        assert_eq!(next("0 0 10 * fri", "2024-01-01T00:00:00Z"), "2024-01-05T00:00:00Z");
        // Day of week restricted, day of month a star: both must match.
        assert_eq!(next("0 0 * * wed", "2024-01-01T00:00:00Z"), "2024-01-03T00:00:00Z");
        for bad in
            ["* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "*/0 * * * *", "@every 1m", "x * * * *"]
        {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones_move_the_schedule() {
        let Ok(tz) = TimeZone::get("America/New_York") else { return };
        let s = Schedule::parse("0 9 * * *").unwrap();
        // 09:00 in New York in winter is 14:00 UTC.
        assert_eq!(rfc3339(s.next_after(ts("2024-01-10T00:00:00Z"), &tz).unwrap()), "2024-01-10T14:00:00Z");
        let cj = json!({"metadata": {"name": "c", "namespace": "ns", "uid": "u"}, "spec": {"jobTemplate": {}}});
        let j = job_for(&cj, ts("2024-01-10T14:00:00Z"), &tz);
        assert_eq!(j["metadata"]["annotations"][SCHEDULED_TIMESTAMP], "2024-01-10T09:00:00-05:00");
    }

    #[test]
    fn missed_schedules_pick_the_most_recent_and_count() {
        let s = Schedule::parse("* * * * *").unwrap();
        let (last, n) = s.most_recent(ts("2024-01-01T10:00:00Z"), ts("2024-01-01T10:05:30Z"), &TimeZone::UTC);
        assert_eq!((last.map(rfc3339).as_deref(), n), (Some("2024-01-01T10:05:00Z"), 5));
        let (last, n) = s.most_recent(ts("2024-01-01T00:00:00Z"), ts("2024-01-03T10:05:30Z"), &TimeZone::UTC);
        assert_eq!(last.map(rfc3339).as_deref(), Some("2024-01-03T10:05:00Z"));
        assert!(n > 100);
        let (last, n) = s.most_recent(ts("2024-01-01T10:00:00Z"), ts("2024-01-01T10:00:30Z"), &TimeZone::UTC);
        assert_eq!((last, n), (None, 0));
    }

    #[test]
    fn jobs_are_named_by_minutes_since_the_epoch() {
        let cj = json!({"metadata": {"name": "hello", "namespace": "ns", "uid": "u"},
            "spec": {"jobTemplate": {"metadata": {"labels": {"a": "b"}}, "spec": {"backoffLimit": 2}}}});
        let t = ts("2024-01-01T10:05:00Z");
        let j = job_for(&cj, t, &TimeZone::UTC);
        assert_eq!(j["metadata"]["name"], format!("hello-{}", 1704103500 / 60));
        assert_eq!(j["metadata"]["annotations"][SCHEDULED_TIMESTAMP], "2024-01-01T10:05:00Z");
        assert_eq!(j["metadata"]["labels"]["a"], "b");
        assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(j["spec"]["backoffLimit"], 2);
    }
}
