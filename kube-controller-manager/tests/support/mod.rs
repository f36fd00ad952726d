//! An in-process apiserver and a controller manager running chosen controllers against it.

#![allow(dead_code, unused_imports)]

use std::sync::Arc;
use std::time::Duration;

pub use kube_apiserver::testing::{TestApiserver, eventually, within};
use kube_controller_manager::{Context, Options};
use serde_json::Value;
use tokio::sync::watch;

pub struct Cluster {
    pub api: TestApiserver,
    pub ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    /// An apiserver and the controllers `names` (as `--controllers`), with extra kube-controller-manager flags.
    pub async fn start(names: &[&str], flags: &[&str]) -> Self {
        let api = TestApiserver::start().await;
        let mut args = vec!["kube-controller-manager".to_string(), format!("--controllers={}", names.join(","))];
        args.extend(flags.iter().map(|s| s.to_string()));
        let options = <Options as clap::Parser>::parse_from(args);
        let root_ca = api.config.ca_pem.as_ref().map(|c| String::from_utf8_lossy(c).into_owned());
        let ctx = Context::new(api.new_client(), options, root_ca);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(kube_controller_manager::run_controllers(ctx.clone(), rx));
        Cluster { api, ctx, stop, task: Some(task) }
    }

    pub fn client(&self) -> &client::Client {
        &self.api.client
    }

    pub fn api(&self, group: &str, version: &str, plural: &str, ns: &str) -> client::Api {
        let a = self.api.client.api(group, version, plural).unwrap();
        if ns.is_empty() { a } else { a.namespaced(ns) }
    }

    /// Creates an object from YAML (namespaced objects in their metadata.namespace, default "default").
    pub async fn create(&self, group: &str, version: &str, plural: &str, yaml: &str) -> Value {
        let obj: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_string();
        let res = api_types::resources::find(group, version, plural).unwrap();
        let ns = if res.namespaced { ns } else { String::new() };
        self.api(group, version, plural, &ns).create(&obj).await.unwrap()
    }

    /// Polls `get` until `pred` holds, failing after `secs` with the last value seen.
    pub async fn until<F, Fut>(&self, secs: u64, what: &str, mut get: F, pred: impl Fn(&Value) -> bool) -> Value
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<Value>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut last = Value::Null;
        loop {
            if let Some(v) = get().await {
                if pred(&v) {
                    return v;
                }
                last = v;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; last seen: {last:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the controllers (waiting for them), then the apiserver.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = within(15, "controllers to stop", t).await;
        }
    }
}
