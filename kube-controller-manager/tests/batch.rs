mod support;

use api_types::patch::PatchType;
use client::ListParams;
use serde_json::{Value, json};
use support::Cluster;

async fn job_pods(c: &Cluster, job: &str) -> Vec<Value> {
    let pods = c.api("", "v1", "pods", "default");
    let lp = ListParams { label_selector: Some(format!("batch.kubernetes.io/job-name={job}")), ..Default::default() };
    let list = pods.list(&lp).await.unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Plays the kubelet: the pod ends in `phase`.
async fn finish(c: &Cluster, pod: &Value, phase: &str) {
    let pods = c.api("", "v1", "pods", "default");
    let name = pod["metadata"]["name"].as_str().unwrap();
    pods.patch_status(name, PatchType::Merge, &json!({"status": {"phase": phase}})).await.unwrap();
}

/// Plays the kubelet: the pod fails with its container `c` exiting with `code`.
async fn fail(c: &Cluster, pod: &Value, code: i64) {
    let pods = c.api("", "v1", "pods", "default");
    let name = pod["metadata"]["name"].as_str().unwrap();
    let status = json!({"status": {"phase": "Failed",
        "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": code}}}]}});
    pods.patch_status(name, PatchType::Merge, &status).await.unwrap();
}

/// Plays the scheduler: the pod is bound to a node, so deleting it is graceful (it stays terminating until
/// [`remove_terminating`] plays the kubelet); unscheduled pods go at once.
async fn bind(c: &Cluster, pod: &Value) {
    let (ns, name) = (pod["metadata"]["namespace"].as_str().unwrap(), pod["metadata"]["name"].as_str().unwrap());
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    let path = format!("/api/v1/namespaces/{ns}/pods/{name}/binding");
    let body = bytes::Bytes::from(binding.to_string());
    c.api.client.request(http::Method::POST, &path, Some((body, "application/json"))).await.unwrap();
}

/// Plays the kubelet: the Job's terminating pods finish and go.
async fn remove_terminating(c: &Cluster, job: &str) {
    let pods = c.api("", "v1", "pods", "default");
    for p in job_pods(c, job).await {
        if p["metadata"].get("deletionTimestamp").is_some() {
            let name = p["metadata"]["name"].as_str().unwrap();
            pods.delete(name, Some(&json!({"gracePeriodSeconds": 0}))).await.unwrap();
        }
    }
}

fn index_of(pod: &Value) -> i64 {
    pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"].as_str().unwrap().parse().unwrap()
}

fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod["metadata"]["annotations"][key].as_str()
}

fn cond(job: &Value, type_: &str) -> Option<Value> {
    job["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_ && c["status"] == "True").cloned()
}

fn live(pods: &[Value]) -> Vec<Value> {
    pods.iter()
        .filter(|p| p["status"]["phase"] == "Pending" && p["metadata"].get("deletionTimestamp").is_none())
        .cloned()
        .collect()
}

const TEMPLATE: &str = "
    template:
      spec:
        restartPolicy: Never
        containers: [{name: c, image: busybox}]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_parallel_pods_until_completions_then_completes() {
    let c = Cluster::start(&["job"], &[]).await;
    let job = c
        .create(
            "batch",
            "v1",
            "jobs",
            &format!("metadata: {{name: pi}}\nspec:\n  completions: 3\n  parallelism: 2\n  {}", TEMPLATE.trim_start()),
        )
        .await;
    let uid = job["metadata"]["uid"].as_str().unwrap().to_string();
    let mut done = 0;
    while done < 3 {
        let pods = c
            .until(
                20,
                "active pods",
                || async { Some(json!(live(&job_pods(&c, "pi").await))) },
                |p| p.as_array().is_some_and(|a| !a.is_empty()),
            )
            .await;
        let pods = pods.as_array().unwrap().clone();
        // Never more than parallelism, never more than the completions left.
        assert!(pods.len() <= 2 && pods.len() <= 3 - done, "{} active pods with {done} done", pods.len());
        let p = &pods[0];
        assert_eq!(p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"], json!(uid));
        assert_eq!(p["metadata"]["labels"]["controller-uid"], json!(uid));
        assert_eq!(p["metadata"]["labels"]["job-name"], "pi");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
        finish(&c, p, "Succeeded").await;
        done += 1;
    }
    let jobs = c.api("batch", "v1", "jobs", "default");
    let j = c.until(20, "Complete", || async { jobs.get("pi").await.ok() }, |j| cond(j, "Complete").is_some()).await;
    assert_eq!(j["status"]["succeeded"], 3);
    assert_eq!(count(&j, "active"), Some(0));
    assert!(j["status"]["completionTime"].is_string() && j["status"]["startTime"].is_string());
    assert_eq!(cond(&j, "Complete").unwrap()["reason"], "CompletionsReached");
    assert!(cond(&j, "SuccessCriteriaMet").is_some());
    assert_eq!(job_pods(&c, "pi").await.len(), 3, "no pod beyond the completions");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_gives_each_pod_its_index() {
    let c = Cluster::start(&["job"], &[]).await;
    c.create(
        "batch",
        "v1",
        "jobs",
        &format!(
            "metadata: {{name: ix}}\nspec:\n  completions: 2\n  parallelism: 2\n  completionMode: Indexed\n  {}",
            TEMPLATE.trim_start()
        ),
    )
    .await;
    let pods = c
        .until(
            20,
            "two pods",
            || async { Some(json!(live(&job_pods(&c, "ix").await))) },
            |p| p.as_array().is_some_and(|a| a.len() == 2),
        )
        .await;
    let mut idx: Vec<String> = pods
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"].as_str().unwrap().into())
        .collect();
    idx.sort();
    assert_eq!(idx, vec!["0", "1"]);
    let p0 = pods.as_array().unwrap().iter().find(|p| p["spec"]["hostname"] == "ix-0").cloned().unwrap();
    finish(&c, &p0, "Succeeded").await;
    let jobs = c.api("batch", "v1", "jobs", "default");
    c.until(
        20,
        "index 0 completed",
        || async { jobs.get("ix").await.ok() },
        |j| j["status"]["completedIndexes"] == "0",
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_job_hits_its_backoff_limit() {
    let c = Cluster::start(&["job"], &[]).await;
    c.create(
        "batch",
        "v1",
        "jobs",
        &format!("metadata: {{name: bad}}\nspec:\n  backoffLimit: 1\n  {}", TEMPLATE.trim_start()),
    )
    .await;
    let jobs = c.api("batch", "v1", "jobs", "default");
    // Two failures are needed (backoffLimit 1); the replacement comes after the 10 s back-off.
    for round in 0..2 {
        let pods = c
            .until(
                30,
                "a pod to fail",
                || async { Some(json!(live(&job_pods(&c, "bad").await))) },
                |p| p.as_array().is_some_and(|a| a.len() == 1),
            )
            .await;
        let j = jobs.get("bad").await.unwrap();
        assert!(cond(&j, "Failed").is_none(), "failed too early, round {round}");
        finish(&c, &pods[0], "Failed").await;
    }
    let j = c.until(20, "Failed", || async { jobs.get("bad").await.ok() }, |j| cond(j, "Failed").is_some()).await;
    assert_eq!(cond(&j, "Failed").unwrap()["reason"], "BackoffLimitExceeded");
    assert_eq!(cond(&j, "Failed").unwrap()["message"], "Job has reached the specified backoff limit");
    assert_eq!(j["status"]["failed"], 2);
    assert_eq!(job_pods(&c, "bad").await.len(), 2, "no pod after the job failed");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_past_its_active_deadline_fails_and_its_pods_go() {
    let c = Cluster::start(&["job"], &[]).await;
    c.create(
        "batch",
        "v1",
        "jobs",
        &format!(
            "metadata: {{name: slow}}\nspec:\n  activeDeadlineSeconds: 2\n  parallelism: 1\n  {}",
            TEMPLATE.trim_start()
        ),
    )
    .await;
    let pods = c
        .until(
            20,
            "a pod",
            || async { Some(json!(live(&job_pods(&c, "slow").await))) },
            |p| p.as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
    bind(&c, &pods[0]).await;
    let jobs = c.api("batch", "v1", "jobs", "default");
    // The interim FailureTarget first; Failed only once the pods are gone (upstream 1.33).
    let j = c
        .until(20, "FailureTarget", || async { jobs.get("slow").await.ok() }, |j| cond(j, "FailureTarget").is_some())
        .await;
    assert_eq!(cond(&j, "FailureTarget").unwrap()["reason"], "DeadlineExceeded");
    assert!(cond(&j, "Failed").is_none(), "Failed while a pod is terminating");
    assert_eq!(j["status"]["terminating"], 1);
    // The running pod was deleted (terminating: there is no kubelet to finish it).
    let pods = job_pods(&c, "slow").await;
    assert!(!pods.is_empty() && pods.iter().all(|p| p["metadata"].get("deletionTimestamp").is_some()), "{pods:#?}");
    remove_terminating(&c, "slow").await;
    let j = c.until(20, "Failed", || async { jobs.get("slow").await.ok() }, |j| cond(j, "Failed").is_some()).await;
    assert_eq!(cond(&j, "Failed").unwrap()["reason"], "DeadlineExceeded");
    assert_eq!(cond(&j, "Failed").unwrap()["message"], "Job was active longer than specified deadline");
    assert_eq!(j["status"]["terminating"], 0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_starts_the_missed_schedule_and_keeps_its_history() {
    let c = Cluster::start(&["cronjob"], &[]).await;
    c.create(
        "batch",
        "v1",
        "cronjobs",
        "metadata: {name: hello}
spec:
  schedule: '*/1 * * * *'
  suspend: true
  successfulJobsHistoryLimit: 0
  jobTemplate:
    metadata: {labels: {app: hello}}
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: c, image: busybox}]",
    )
    .await;
    let cjs = c.api("batch", "v1", "cronjobs", "default");
    let jobs = c.api("batch", "v1", "jobs", "default");
    // Suspended: nothing runs even with schedules missed since five minutes ago.
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(5);
    let past = past.strftime("%Y-%m-%dT%H:%M:00Z").to_string();
    cjs.patch_status("hello", PatchType::Merge, &json!({"status": {"lastScheduleTime": past}})).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(jobs.list(&ListParams::default()).await.unwrap()["items"].as_array().unwrap().is_empty());
    cjs.patch("hello", PatchType::Merge, &json!({"spec": {"suspend": false}})).await.unwrap();
    let cj = c
        .until(
            20,
            "a job started",
            || async { cjs.get("hello").await.ok() },
            |cj| cj["status"]["active"].as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
    let name = cj["status"]["active"][0]["name"].as_str().unwrap().to_string();
    let last: jiff::Timestamp = cj["status"]["lastScheduleTime"].as_str().unwrap().parse().unwrap();
    assert_eq!(name, format!("hello-{}", last.as_second() / 60), "named by the most recent schedule time");
    assert!(last > past.parse().unwrap() && last <= jiff::Timestamp::now());
    let job = jobs.get(&name).await.unwrap();
    assert_eq!(
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        json!(last.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
    );
    assert_eq!(job["metadata"]["labels"]["app"], "hello");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    // Only one job for the missed schedules.
    assert_eq!(jobs.list(&ListParams::default()).await.unwrap()["items"].as_array().unwrap().len(), 1);
    // The job completes: it leaves the active list, lastSuccessfulTime follows, and a history limit of 0 removes it.
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    jobs.patch_status(
        &name,
        PatchType::Merge,
        &json!({"status": {"completionTime": now, "conditions": [{"type": "Complete", "status": "True"}]}}),
    )
    .await
    .unwrap();
    let cj = c
        .until(
            20,
            "lastSuccessfulTime",
            || async { cjs.get("hello").await.ok() },
            |cj| cj["status"]["lastSuccessfulTime"] == json!(now),
        )
        .await;
    assert!(cj["status"].get("active").is_none_or(|a| a.as_array().is_some_and(Vec::is_empty)));
    c.until(
        20,
        "the finished job deleted",
        || async { Some(json!(jobs.get(&name).await.is_err())) },
        |gone| *gone == json!(true),
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_failure_policy_fails_the_job_on_a_matching_exit_code() {
    let c = Cluster::start(&["job"], &[]).await;
    c.create(
        "batch",
        "v1",
        "jobs",
        &format!(
            "metadata: {{name: pfp}}\nspec:\n  backoffLimit: 6\n  podFailurePolicy:\n    rules: [{{action: FailJob, onExitCodes: {{operator: In, values: [42]}}}}]\n  {}",
            TEMPLATE.trim_start()
        ),
    )
    .await;
    let pods = c
        .until(
            20,
            "a pod",
            || async { Some(json!(live(&job_pods(&c, "pfp").await))) },
            |p| p.as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
    let name = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    let status = json!({"status": {"phase": "Failed",
        "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 42}}}]}});
    c.api("", "v1", "pods", "default").patch_status(&name, PatchType::Merge, &status).await.unwrap();
    let jobs = c.api("batch", "v1", "jobs", "default");
    let j = c.until(20, "Failed", || async { jobs.get("pfp").await.ok() }, |j| cond(j, "Failed").is_some()).await;
    let failed = cond(&j, "Failed").unwrap();
    assert_eq!(failed["reason"], "PodFailurePolicy");
    assert_eq!(
        failed["message"],
        json!(format!("Container c for pod default/{name} failed with exit code 42 matching FailJob rule at index 0"))
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_job_runs_no_pods_until_resumed() {
    let c = Cluster::start(&["job"], &[]).await;
    c.create(
        "batch",
        "v1",
        "jobs",
        &format!("metadata: {{name: later}}\nspec:\n  suspend: true\n  {}", TEMPLATE.trim_start()),
    )
    .await;
    let jobs = c.api("batch", "v1", "jobs", "default");
    let j =
        c.until(20, "Suspended", || async { jobs.get("later").await.ok() }, |j| cond(j, "Suspended").is_some()).await;
    assert_eq!(cond(&j, "Suspended").unwrap()["reason"], "JobSuspended");
    assert!(job_pods(&c, "later").await.is_empty());
    jobs.patch("later", PatchType::Merge, &json!({"spec": {"suspend": false}})).await.unwrap();
    c.until(
        20,
        "a pod after resume",
        || async { Some(json!(live(&job_pods(&c, "later").await))) },
        |p| p.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    let j = jobs.get("later").await.unwrap();
    let s = j["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Suspended").cloned().unwrap();
    assert_eq!((s["status"].as_str(), s["reason"].as_str()), (Some("False"), Some("JobResumed")));
    c.stop().await;
}

fn controller_of(pod: &Value) -> Option<Value> {
    pod["metadata"]["ownerReferences"].as_array()?.iter().find(|r| r["controller"] == json!(true)).cloned()
}

/// Upstream's e2e "should adopt matching orphans and release non-matching pods", plus an orphan created by hand
/// with the Job's labels (adopted and counted) and the replacement of the released pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_adopts_matching_orphans_and_releases_pods_that_stop_matching() {
    let c = Cluster::start(&["job"], &[]).await;
    let job = c
        .create(
            "batch",
            "v1",
            "jobs",
            &format!(
                "metadata: {{name: adopt}}\nspec:\n  completions: 4\n  parallelism: 2\n  {}",
                TEMPLATE.trim_start()
            ),
        )
        .await;
    let uid = job["metadata"]["uid"].as_str().unwrap().to_string();
    let selector = &job["spec"]["selector"]["matchLabels"];
    assert_eq!(selector, &json!({"batch.kubernetes.io/controller-uid": uid}), "the apiserver's generated selector");
    let pods = c.api("", "v1", "pods", "default");
    let jobs = c.api("batch", "v1", "jobs", "default");
    let owned = |p: &Value| controller_of(p).is_some_and(|r| r["uid"] == json!(uid));
    let active = c
        .until(
            20,
            "two active pods",
            || async { Some(json!(live(&job_pods(&c, "adopt").await))) },
            |p| p.as_array().is_some_and(|a| a.len() == 2),
        )
        .await;
    let active = active.as_array().unwrap().clone();

    // One of the Job's pods loses its controllerRef: the Job adopts it again (and creates no replacement).
    let name = active[0]["metadata"]["name"].as_str().unwrap().to_string();
    pods.patch(&name, PatchType::Merge, &json!({"metadata": {"ownerReferences": null}})).await.unwrap();
    let p =
        c.until(20, "the pod readopted", || async { pods.get(&name).await.ok() }, |p| controller_of(p).is_some()).await;
    let r = controller_of(&p).unwrap();
    assert_eq!((r["kind"].clone(), r["name"].clone(), r["uid"].clone()), (json!("Job"), json!("adopt"), json!(uid)));
    assert_eq!(r["blockOwnerDeletion"], true);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(live(&job_pods(&c, "adopt").await).len(), 2, "no replacement for a readopted pod");

    // An orphan with the Job's labels that already succeeded: adopted and counted.
    let orphan = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "labels": {"app": "x"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
    pods.create(&orphan).await.unwrap();
    pods.patch_status("orphan", PatchType::Merge, &json!({"status": {"phase": "Succeeded"}})).await.unwrap();
    let labels = json!({"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
        "batch.kubernetes.io/job-name": "adopt", "job-name": "adopt"});
    pods.patch("orphan", PatchType::Merge, &json!({"metadata": {"labels": labels}})).await.unwrap();
    c.until(20, "the orphan adopted", || async { pods.get("orphan").await.ok() }, |p| owned(p)).await;
    let j = c
        .until(
            20,
            "the adopted pod counted",
            || async { jobs.get("adopt").await.ok() },
            |j| j["status"]["succeeded"] == 1,
        )
        .await;
    assert_eq!(j["status"]["active"], 2);

    // An owned pod whose labels stop matching is released, and replaced.
    pods.patch(
        &name,
        PatchType::Merge,
        &json!({"metadata": {"labels": {"batch.kubernetes.io/controller-uid": null, "controller-uid": null}}}),
    )
    .await
    .unwrap();
    let p =
        c.until(20, "the pod released", || async { pods.get(&name).await.ok() }, |p| controller_of(p).is_none()).await;
    assert!(p["metadata"].get("deletionTimestamp").is_none(), "released, not deleted");
    let replaced = c
        .until(
            20,
            "a replacement",
            || async {
                let list = pods.list(&Default::default()).await.ok()?;
                Some(json!(list["items"].as_array()?.iter().filter(|p| owned(p)).cloned().collect::<Vec<_>>()))
            },
            |l| live(l.as_array().unwrap()).len() == 2,
        )
        .await;
    let now_active = live(replaced.as_array().unwrap());
    let names: Vec<&str> = now_active.iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    assert!(!names.contains(&name.as_str()), "{names:?}");
    c.until(
        20,
        "status",
        || async { jobs.get("adopt").await.ok() },
        |j| j["status"]["active"] == 2 && j["status"]["succeeded"] == 1,
    )
    .await;
    c.stop().await;
}

async fn live_pods(c: &Cluster, job: &str, n: usize) -> Vec<Value> {
    let pods = c
        .until(
            40,
            &format!("{n} live pods of {job}"),
            || async { Some(json!(live(&job_pods(c, job).await))) },
            |p| p.as_array().is_some_and(|a| a.len() == n),
        )
        .await;
    pods.as_array().unwrap().clone()
}

async fn job_until(c: &Cluster, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let jobs = c.api("batch", "v1", "jobs", "default");
    c.until(40, what, || async { jobs.get(name).await.ok() }, pred).await
}

fn indexed_job(name: &str, completions: i64, parallelism: i64, extra: &str) -> String {
    format!(
        "metadata: {{name: {name}}}\nspec:\n  completions: {completions}\n  parallelism: {parallelism}\n  completionMode: Indexed\n{extra}  {}",
        TEMPLATE.trim_start()
    )
}

/// Upstream's e2e "should allow to use a SuccessPolicy matching succeededIndexes": once index 0 succeeded the
/// Job meets its success criteria, its other pods are terminated, and it completes once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_policy_matching_succeeded_indexes_completes_the_job() {
    let c = Cluster::start(&["job"], &[]).await;
    c.create("batch", "v1", "jobs", &indexed_job("sp", 3, 3, "  successPolicy: {rules: [{succeededIndexes: '0'}]}\n"))
        .await;
    let pods = live_pods(&c, "sp", 3).await;
    for p in &pods {
        bind(&c, p).await;
    }
    let p0 = pods.iter().find(|p| index_of(p) == 0).unwrap();
    finish(&c, p0, "Succeeded").await;
    let j = job_until(&c, "sp", "SuccessCriteriaMet", |j| cond(j, "SuccessCriteriaMet").is_some()).await;
    let met = cond(&j, "SuccessCriteriaMet").unwrap();
    assert_eq!(
        (met["reason"].as_str(), met["message"].as_str()),
        (Some("SuccessPolicy"), Some("Matched rules at index 0"))
    );
    // The other indexes' pods are being terminated; the Job is not Complete before they are gone.
    let j = job_until(&c, "sp", "terminating pods", |j| j["status"]["terminating"] == 2).await;
    assert!(cond(&j, "Complete").is_none());
    assert!(j["status"].get("completionTime").is_none_or(Value::is_null));
    let pods = job_pods(&c, "sp").await;
    assert_eq!(pods.iter().filter(|p| p["metadata"].get("deletionTimestamp").is_some()).count(), 2);
    remove_terminating(&c, "sp").await;
    let j = job_until(&c, "sp", "Complete", |j| cond(j, "Complete").is_some()).await;
    let complete = cond(&j, "Complete").unwrap();
    assert_eq!(
        (complete["reason"].as_str(), complete["message"].as_str()),
        (Some("SuccessPolicy"), Some("Matched rules at index 0"))
    );
    assert!(j["status"]["completionTime"].is_string());
    assert_eq!(j["status"]["completedIndexes"], "0");
    assert_eq!((count(&j, "succeeded"), count(&j, "active")), (Some(1), Some(0)));
    assert_eq!((j["status"]["ready"].as_i64(), j["status"]["terminating"].as_i64()), (Some(0), Some(0)));
    assert!(cond(&j, "FailureTarget").is_none() && cond(&j, "Failed").is_none());
    assert_eq!(job_pods(&c, "sp").await.len(), 1, "no pod created after the success criteria were met");
    c.stop().await;
}

/// Upstream's e2e "should allow to use a SuccessPolicy matching succeededCount".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_policy_matching_succeeded_count_completes_the_job() {
    let c = Cluster::start(&["job"], &[]).await;
    c.create("batch", "v1", "jobs", &indexed_job("spc", 4, 2, "  successPolicy: {rules: [{succeededCount: 1}]}\n"))
        .await;
    let pods = live_pods(&c, "spc", 2).await;
    let p1 = pods.iter().find(|p| index_of(p) == 1).unwrap();
    finish(&c, p1, "Succeeded").await;
    let j = job_until(&c, "spc", "SuccessCriteriaMet", |j| cond(j, "SuccessCriteriaMet").is_some()).await;
    assert_eq!(cond(&j, "SuccessCriteriaMet").unwrap()["reason"], "SuccessPolicy");
    remove_terminating(&c, "spc").await;
    let j = job_until(&c, "spc", "Complete", |j| cond(j, "Complete").is_some()).await;
    assert_eq!(cond(&j, "Complete").unwrap()["reason"], "SuccessPolicy");
    assert_eq!(cond(&j, "Complete").unwrap()["message"], "Matched rules at index 0");
    assert_eq!(j["status"]["completedIndexes"], "1");
    assert_eq!((count(&j, "succeeded"), count(&j, "active")), (Some(1), Some(0)));
    assert_eq!(job_pods(&c, "spc").await.len(), 1, "indexes 2 and 3 never started");
    c.stop().await;
}

/// Upstream's e2e "should allow to use the pod failure policy to not count the failure towards the
/// backoffLimit": backoffLimit 0, a pod failing with exit code 1 (ignored) is replaced and the Job completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_pod_failures_do_not_count_towards_the_backoff_limit() {
    let c = Cluster::start(&["job"], &[]).await;
    let job = c
        .create(
            "batch",
            "v1",
            "jobs",
            &format!(
                "metadata: {{name: ign}}\nspec:\n  completions: 4\n  parallelism: 2\n  backoffLimit: 0\n  podFailurePolicy:\n    rules:\n    - {{action: Ignore, onExitCodes: {{operator: In, values: [1]}}}}\n    - {{action: Ignore, onPodConditions: [{{type: DisruptionTarget, status: 'True'}}]}}\n  {}",
                TEMPLATE.trim_start()
            ),
        )
        .await;
    assert_eq!(job["spec"]["podReplacementPolicy"], "Failed", "defaulted as upstream with a pod failure policy");
    let pods = live_pods(&c, "ign", 2).await;
    fail(&c, &pods[0], 1).await;
    // An evicted pod (DisruptionTarget, killed with 137): ignored too (upstream's "ignore failure for an evicted
    // pod; matching on the DisruptionTarget condition").
    let evicted = json!({"status": {"phase": "Failed",
        "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}],
        "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 137}}}]}});
    let name = pods[1]["metadata"]["name"].as_str().unwrap();
    c.api("", "v1", "pods", "default").patch_status(name, PatchType::Merge, &evicted).await.unwrap();
    let mut done = 0;
    while done < 4 {
        let pods = c
            .until(
                20,
                "a live pod",
                || async { Some(json!(live(&job_pods(&c, "ign").await))) },
                |p| p.as_array().is_some_and(|a| !a.is_empty()),
            )
            .await;
        finish(&c, &pods[0], "Succeeded").await;
        done += 1;
        let j = c.api("batch", "v1", "jobs", "default").get("ign").await.unwrap();
        assert!(cond(&j, "FailureTarget").is_none(), "{j:#?}");
    }
    let j = job_until(&c, "ign", "Complete", |j| cond(j, "Complete").is_some()).await;
    assert_eq!(cond(&j, "SuccessCriteriaMet").unwrap()["reason"], "CompletionsReached");
    assert_eq!(cond(&j, "Complete").unwrap()["reason"], "CompletionsReached");
    assert_eq!((count(&j, "succeeded"), count(&j, "failed")), (Some(4), Some(0)));
    assert_eq!(job_pods(&c, "ign").await.len(), 6);
    c.stop().await;
}

/// Upstream's e2e "should execute all indexes despite some failing when using backoffLimitPerIndex": odd indexes
/// fail, even ones succeed; each odd index runs twice (backoffLimitPerIndex 1) and then fails, the rest go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_limit_per_index_runs_every_index_and_fails_the_failed_ones() {
    let c = Cluster::start(&["job"], &[]).await;
    let job = c.create("batch", "v1", "jobs", &indexed_job("bli", 4, 2, "  backoffLimitPerIndex: 1\n")).await;
    assert_eq!(job["spec"]["backoffLimit"], 2147483647, "defaulted as upstream with backoffLimitPerIndex");
    let jobs = c.api("batch", "v1", "jobs", "default");
    loop {
        let j = jobs.get("bli").await.unwrap();
        if cond(&j, "FailureTarget").is_some() {
            break;
        }
        for p in live(&job_pods(&c, "bli").await) {
            if index_of(&p) % 2 == 1 { fail(&c, &p, 1).await } else { finish(&c, &p, "Succeeded").await }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let j = job_until(&c, "bli", "Failed", |j| cond(j, "Failed").is_some()).await;
    assert_eq!(cond(&j, "FailureTarget").unwrap()["reason"], "FailedIndexes");
    assert_eq!(cond(&j, "Failed").unwrap()["reason"], "FailedIndexes");
    assert_eq!(cond(&j, "Failed").unwrap()["message"], "Job has failed indexes");
    assert_eq!(j["status"]["failedIndexes"], "1,3");
    assert_eq!(j["status"]["completedIndexes"], "0,2");
    assert_eq!((count(&j, "failed"), count(&j, "succeeded")), (Some(4), Some(2)));
    // Two pods for each failing index (failure counts 0 and 1), one for each succeeding one.
    let pods = job_pods(&c, "bli").await;
    for ix in 0..4 {
        let mut counts: Vec<&str> = pods
            .iter()
            .filter(|p| index_of(p) == ix)
            .map(|p| annotation(p, "batch.kubernetes.io/job-index-failure-count").unwrap())
            .collect();
        counts.sort();
        assert_eq!(counts, if ix % 2 == 1 { vec!["0", "1"] } else { vec!["0"] }, "index {ix}");
    }
    c.stop().await;
}

/// Upstream's e2e "should terminate job execution when the number of failed indexes exceeds maxFailedIndexes".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_max_failed_indexes_fails_the_job_at_once() {
    let c = Cluster::start(&["job"], &[]).await;
    c.create("batch", "v1", "jobs", &indexed_job("mfi", 4, 1, "  backoffLimitPerIndex: 0\n  maxFailedIndexes: 0\n"))
        .await;
    let pods = live_pods(&c, "mfi", 1).await;
    assert_eq!(index_of(&pods[0]), 0);
    fail(&c, &pods[0], 1).await;
    let j = job_until(&c, "mfi", "Failed", |j| cond(j, "Failed").is_some()).await;
    assert_eq!(cond(&j, "FailureTarget").unwrap()["reason"], "MaxFailedIndexesExceeded");
    let failed = cond(&j, "Failed").unwrap();
    assert_eq!(failed["reason"], "MaxFailedIndexesExceeded");
    assert_eq!(failed["message"], "Job has exceeded the specified maximal number of failed indexes");
    assert_eq!(j["status"]["failedIndexes"], "0");
    assert_eq!(j["status"]["failed"], 1);
    assert_eq!(job_pods(&c, "mfi").await.len(), 1, "no other index started");
    c.stop().await;
}

/// Upstream's e2e "should mark indexes as failed when the FailIndex action is matched in podFailurePolicy", plus
/// an ignored failure first: its replacement carries `job-index-ignored-failure-count`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_index_action_fails_the_index_without_retries() {
    let c = Cluster::start(&["job"], &[]).await;
    let extra = "  backoffLimitPerIndex: 1
  podFailurePolicy:
    rules:
    - {action: Ignore, onExitCodes: {operator: In, values: [3]}}
    - {action: FailIndex, onExitCodes: {operator: In, values: [1]}}
";
    c.create("batch", "v1", "jobs", &indexed_job("fi", 2, 2, extra)).await;
    let pods = live_pods(&c, "fi", 2).await;
    let p0 = pods.iter().find(|p| index_of(p) == 0).unwrap();
    let p1 = pods.iter().find(|p| index_of(p) == 1).unwrap();
    assert_eq!(annotation(p1, "batch.kubernetes.io/job-index-failure-count"), Some("0"));
    finish(&c, p0, "Succeeded").await;
    // An ignored failure: the index is retried, the failure not counted.
    fail(&c, p1, 3).await;
    let pods = live_pods(&c, "fi", 1).await;
    assert_eq!(index_of(&pods[0]), 1);
    assert_eq!(annotation(&pods[0], "batch.kubernetes.io/job-index-failure-count"), Some("0"));
    assert_eq!(annotation(&pods[0], "batch.kubernetes.io/job-index-ignored-failure-count"), Some("1"));
    // FailIndex: the index fails at once although backoffLimitPerIndex would allow a retry.
    fail(&c, &pods[0], 1).await;
    let j = job_until(&c, "fi", "Failed", |j| cond(j, "Failed").is_some()).await;
    assert_eq!(cond(&j, "FailureTarget").unwrap()["reason"], "FailedIndexes");
    assert_eq!(cond(&j, "Failed").unwrap()["reason"], "FailedIndexes");
    assert_eq!(j["status"]["failedIndexes"], "1");
    assert_eq!(j["status"]["completedIndexes"], "0");
    assert_eq!((count(&j, "failed"), count(&j, "succeeded")), (Some(1), Some(1)));
    assert_eq!(job_pods(&c, "fi").await.len(), 3);
    c.stop().await;
}

/// The apiserver rejects the per-index and success policy fields as upstream's validation does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_policies_are_validated_as_upstream() {
    let c = Cluster::start(&["job"], &[]).await;
    let jobs = c.api("batch", "v1", "jobs", "default");
    let job = |spec: Value| {
        let mut j = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "v"},
            "spec": {"completions": 2, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}});
        for (k, v) in spec.as_object().unwrap() {
            j["spec"][k] = v.clone();
        }
        j
    };
    let err = jobs.create(&job(json!({"successPolicy": {"rules": [{"succeededCount": 1}]}}))).await.unwrap_err();
    assert_eq!(err.code(), Some(422));
    assert!(err.to_string().contains("spec.successPolicy: Invalid value: "), "{err}");
    assert!(err.to_string().contains("requires indexed completion mode"), "{err}");
    let err = jobs
        .create(&job(json!({"completionMode": "Indexed", "maxFailedIndexes": 3, "backoffLimitPerIndex": 1})))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("spec.maxFailedIndexes: Invalid value: 3: must be less than or equal to completions"),
        "{err}"
    );
    let rule = json!({"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}]});
    let err = jobs.create(&job(json!({"completionMode": "Indexed", "podFailurePolicy": rule}))).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.podFailurePolicy.rules[0].action: Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set"),
        "{err}"
    );
    let ok = jobs
        .create(&job(json!({"completionMode": "Indexed", "backoffLimitPerIndex": 1, "podFailurePolicy": rule,
            "successPolicy": {"rules": [{"succeededIndexes": "0-1"}]}})))
        .await
        .unwrap();
    assert_eq!(ok["spec"]["podReplacementPolicy"], "Failed");
    let err = jobs.patch("v", PatchType::Merge, &json!({"spec": {"backoffLimitPerIndex": 2}})).await.unwrap_err();
    assert!(err.to_string().contains("spec.backoffLimitPerIndex: Invalid value: 2: field is immutable"), "{err}");
    c.stop().await;
}

/// Upstream's e2e "should recreate pods only after they have failed if pod replacement policy is set to Failed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_replacement_policy_failed_waits_for_the_terminating_pod() {
    let c = Cluster::start(&["job"], &[]).await;
    c.create(
        "batch",
        "v1",
        "jobs",
        &format!(
            "metadata: {{name: prp}}\nspec:\n  backoffLimit: 1\n  podReplacementPolicy: Failed\n  {}",
            TEMPLATE.trim_start()
        ),
    )
    .await;
    let pods = live_pods(&c, "prp", 1).await;
    bind(&c, &pods[0]).await;
    let name = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    c.api("", "v1", "pods", "default").delete(&name, Some(&json!({"gracePeriodSeconds": 30}))).await.unwrap();
    let j = job_until(&c, "prp", "one terminating pod", |j| j["status"]["terminating"] == 1).await;
    assert_eq!((count(&j, "active"), count(&j, "failed")), (Some(0), Some(0)));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(job_pods(&c, "prp").await.len(), 1, "no replacement while the pod is terminating");
    // The pod fails (the kubelet killed it): now it is replaced.
    fail(&c, &pods[0], 143).await;
    let j = job_until(&c, "prp", "a replacement", |j| j["status"]["active"] == 1 && j["status"]["failed"] == 1).await;
    assert_eq!(j["status"]["terminating"], 0);
    c.stop().await;
}

/// A Job status count: absent is zero (the field is `omitempty`, so upstream's storage drops a zero as ours does).
fn count(j: &Value, field: &str) -> Option<i64> {
    Some(j["status"][field].as_i64().unwrap_or(0))
}
