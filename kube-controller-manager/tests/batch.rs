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
    assert_eq!(j["status"]["active"], 0);
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
    c.until(
        20,
        "a pod",
        || async { Some(json!(live(&job_pods(&c, "slow").await))) },
        |p| p.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    let jobs = c.api("batch", "v1", "jobs", "default");
    let j = c.until(20, "Failed", || async { jobs.get("slow").await.ok() }, |j| cond(j, "Failed").is_some()).await;
    assert_eq!(cond(&j, "Failed").unwrap()["reason"], "DeadlineExceeded");
    assert_eq!(cond(&j, "Failed").unwrap()["message"], "Job was active longer than specified deadline");
    // The running pod was deleted (terminating: there is no kubelet to finish it).
    let pods = job_pods(&c, "slow").await;
    assert!(pods.iter().all(|p| p["metadata"].get("deletionTimestamp").is_some()), "{pods:#?}");
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
