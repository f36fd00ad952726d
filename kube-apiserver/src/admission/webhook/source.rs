//! The webhooks in force (upstream's `configuration/{mutating,validating}_webhook_manager.go`): both configuration
//! kinds listed and watched through the watch cache, each change compiled into an immutable snapshot (configurations
//! sorted by name, webhooks in their order) swapped in whole, so a request reads it with one atomic load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use serde_json::Value;

use super::predicates::Selector;
use super::rules::Rule;
use crate::registry::{ListParams, Registry, WatchEvent, meta_str};

/// Where a webhook is reached (`clientConfig`).
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// `url`: `https://host[:port][/path]`, as given.
    Url(String),
    /// `service`: an endpoint of the Service, presented as `https://<name>.<namespace>.svc:<port><path>`.
    Service { namespace: String, name: String, port: u16, path: String },
}

/// `clientConfig`: the endpoint and the CA its serving certificate is checked against.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub endpoint: Endpoint,
    /// PEM of `caBundle` (None: no trusted roots, so every call fails).
    pub ca_bundle: Option<Vec<u8>>,
}

impl ClientConfig {
    /// A webhook's `clientConfig` (admission webhooks, CRD conversion webhooks): `service` (port 443 by default)
    /// or `url`, and the base64 `caBundle`.
    pub fn from_json(cc: &Value) -> Self {
        let endpoint = match cc.get("service").filter(|s| s.is_object()) {
            Some(s) => Endpoint::Service {
                namespace: s["namespace"].as_str().unwrap_or_default().to_string(),
                name: s["name"].as_str().unwrap_or_default().to_string(),
                port: s["port"].as_u64().unwrap_or(443) as u16,
                path: s["path"].as_str().unwrap_or_default().to_string(),
            },
            None => Endpoint::Url(cc["url"].as_str().unwrap_or_default().to_string()),
        };
        let ca_bundle = cc["caBundle"]
            .as_str()
            .filter(|c| !c.is_empty())
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok());
        ClientConfig { endpoint, ca_bundle }
    }
}

/// `sideEffects`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideEffects {
    Unknown,
    None,
    Some,
    NoneOnDryRun,
}

/// One webhook of a configuration, compiled.
#[derive(Debug)]
pub struct Hook {
    /// The configuration's name.
    pub configuration: String,
    pub name: String,
    /// `<configuration>/<name>/<index>`: tells webhooks of the same name apart (reinvocation).
    pub uid: String,
    pub client: ClientConfig,
    pub rules: Vec<Rule>,
    /// `failurePolicy: Ignore` (the default is Fail).
    pub ignore_failures: bool,
    pub namespace_selector: Selector,
    pub object_selector: Selector,
    /// None when unset (a v1 object always has it; a dry run then fails as upstream's "SideEffects is nil").
    pub side_effects: Option<SideEffects>,
    /// `timeoutSeconds` (default 10).
    pub timeout: Duration,
    pub review_versions: Vec<String>,
    /// `reinvocationPolicy: IfNeeded` (mutating only).
    pub reinvoke_if_needed: bool,
    /// `matchConditions`, compiled.
    pub match_conditions: super::matchconditions::MatchConditions,
    /// `matchPolicy: Equivalent` (the v1 default): a rule naming another version of the request's resource
    /// matches too.
    pub equivalent: bool,
}

impl Hook {
    /// Compiles webhook `index` of a configuration.
    pub fn from_json(configuration: &str, index: usize, w: &Value) -> Hook {
        let name = w["name"].as_str().unwrap_or_default().to_string();
        let side_effects = match w["sideEffects"].as_str() {
            Some("None") => Some(SideEffects::None),
            Some("NoneOnDryRun") => Some(SideEffects::NoneOnDryRun),
            Some("Some") => Some(SideEffects::Some),
            Some(_) => Some(SideEffects::Unknown),
            None => None,
        };
        Hook {
            configuration: configuration.to_string(),
            uid: format!("{configuration}/{name}/{index}"),
            name,
            client: ClientConfig::from_json(&w["clientConfig"]),
            rules: w["rules"].as_array().into_iter().flatten().map(Rule::from_json).collect(),
            ignore_failures: w["failurePolicy"] == "Ignore",
            namespace_selector: Selector::from_json(w.get("namespaceSelector")),
            object_selector: Selector::from_json(w.get("objectSelector")),
            side_effects,
            timeout: Duration::from_secs(w["timeoutSeconds"].as_u64().unwrap_or(10)),
            review_versions: w["admissionReviewVersions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            reinvoke_if_needed: w["reinvocationPolicy"] == "IfNeeded",
            match_conditions: super::matchconditions::MatchConditions::compile(
                w["matchConditions"].as_array().map(Vec::as_slice).unwrap_or_default(),
                false,
                None,
            ),
            equivalent: w["matchPolicy"] != "Exact",
        }
    }

    /// Whether any rule covers the request.
    pub fn rules_match(&self, a: &super::rules::Attrs<'_>) -> bool {
        self.rules.iter().any(|r| r.matches(a))
    }

    /// How the rules cover the request (upstream's `ShouldCallHook`): as its own resource, else, under
    /// matchPolicy Equivalent, as the first of `equivalents` (the other versions of its resource) a rule covers.
    pub fn matched(
        &self,
        a: &super::rules::Attrs<'_>,
        equivalents: impl FnOnce() -> Vec<&'static api_types::Resource>,
    ) -> Option<super::rules::Matched> {
        if self.rules_match(a) {
            return Some(super::rules::Matched::Own);
        }
        if !self.equivalent {
            return None;
        }
        equivalents().into_iter().find_map(|e| {
            let as_e = super::rules::Attrs { group: e.group, version: e.version, resource: e.plural, ..*a };
            self.rules_match(&as_e).then_some(super::rules::Matched::Equivalent(e))
        })
    }
}

/// The webhooks of a list of configurations, configurations sorted by name (upstream sorts them so the order of
/// mutating webhooks is stable across apiservers).
pub fn compile(configurations: &BTreeMap<String, Value>) -> Vec<Arc<Hook>> {
    let mut out = Vec::new();
    for (name, c) in configurations {
        for (i, w) in c["webhooks"].as_array().into_iter().flatten().enumerate() {
            out.push(Arc::new(Hook::from_json(name, i, w)));
        }
    }
    out
}

/// The compiled webhooks in force.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub mutating: Vec<Arc<Hook>>,
    pub validating: Vec<Arc<Hook>>,
}

/// The current snapshot, and whether both kinds were listed once.
#[derive(Default)]
pub struct Source {
    snap: ArcSwap<Snapshot>,
    synced: tokio::sync::watch::Sender<(bool, bool)>,
}

impl Source {
    /// The snapshot now (no reference count is taken unless the caller keeps it).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snap.load()
    }

    /// Replaces the webhooks of one kind.
    pub fn set(&self, mutating: bool, hooks: Vec<Arc<Hook>>) {
        self.snap.rcu(|cur| {
            let mut next = Snapshot { mutating: cur.mutating.clone(), validating: cur.validating.clone() };
            if mutating {
                next.mutating = hooks.clone();
            } else {
                next.validating = hooks.clone();
            }
            next
        });
        self.synced.send_modify(|(m, v)| {
            if mutating {
                *m = true;
            } else {
                *v = true;
            }
        });
    }

    /// Whether both kinds have been listed once (upstream's `HasSynced`).
    pub fn synced(&self) -> bool {
        let (m, v) = *self.synced.borrow();
        m && v
    }

    /// Waits up to `max` for the first lists (upstream's plugins wait 10 s, then refuse the request).
    pub async fn wait_synced(&self, max: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::time::timeout(max, rx.wait_for(|(m, v)| *m && *v)).await.is_ok_and(|r| r.is_ok())
    }
}

/// Feeds `source` from both configuration resources until `stop` fires.
pub fn spawn(registry: Registry, source: Arc<Source>, stop: tokio::sync::watch::Receiver<bool>) {
    for (plural, mutating) in [("mutatingwebhookconfigurations", true), ("validatingwebhookconfigurations", false)] {
        let Some(res) = api_types::resources::find("admissionregistration.k8s.io", "v1", plural) else {
            tracing::error!(plural, "webhook configurations are not in the resource table");
            continue;
        };
        let (registry, source, mut stop) = (registry.clone(), source.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = follow(&registry, res, mutating, &source) => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// Lists and watches one configuration kind forever, relisting when the watch ends.
async fn follow(registry: &Registry, res: &'static api_types::Resource, mutating: bool, source: &Source) {
    loop {
        let page = match registry.list(res, None, &ListParams::default()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(resource = res.plural, error = %e, "webhook configuration list failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut configs = BTreeMap::new();
        for item in &page.items {
            if let Ok(o) = item.value() {
                configs.insert(meta_str(&o, "name").unwrap_or_default().to_string(), o);
            }
        }
        source.set(mutating, compile(&configs));
        let p = ListParams { resource_version: Some(page.resource_version.to_string()), ..Default::default() };
        let mut rx = match registry.watch(res, None, p, false).await {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(resource = res.plural, error = %e, "webhook configuration watch failed; relisting");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(ev) = rx.recv().await {
            let mut batch = vec![ev];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let mut relist = false;
            for ev in batch {
                match ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        configs.insert(meta_str(&o, "name").unwrap_or_default().to_string(), (*o).clone());
                    }
                    WatchEvent::Deleted(o) => {
                        configs.remove(meta_str(&o, "name").unwrap_or_default());
                    }
                    WatchEvent::Bookmark(_) => {}
                    WatchEvent::Error(e) => {
                        tracing::info!(resource = res.plural, error = %e, "webhook configuration watch ended");
                        relist = true;
                    }
                }
            }
            source.set(mutating, compile(&configs));
            if relist {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configurations_compile_in_name_order_with_v1_defaults() {
        let mut configs = BTreeMap::new();
        configs.insert(
            "b".to_string(),
            json!({"webhooks": [{"name": "b1.example.com", "clientConfig": {"url": "https://127.0.0.1:1/x"}}]}),
        );
        configs.insert(
            "a".to_string(),
            json!({"webhooks": [
                {"name": "a1.example.com", "clientConfig": {"service": {"namespace": "ns", "name": "svc", "path": "/p"}, "caBundle": "Y2E="},
                 "failurePolicy": "Ignore", "sideEffects": "None", "timeoutSeconds": 3, "reinvocationPolicy": "IfNeeded",
                 "admissionReviewVersions": ["v1"], "namespaceSelector": {"matchLabels": {"a": "b"}}},
                {"name": "a2.example.com", "clientConfig": {"url": "https://h/"}, "sideEffects": "Some"}]}),
        );
        let hooks = compile(&configs);
        let names: Vec<_> = hooks.iter().map(|h| h.uid.as_str()).collect();
        assert_eq!(names, ["a/a1.example.com/0", "a/a2.example.com/1", "b/b1.example.com/0"]);
        let a1 = &hooks[0];
        assert_eq!(
            a1.client,
            ClientConfig {
                endpoint: Endpoint::Service {
                    namespace: "ns".into(),
                    name: "svc".into(),
                    port: 443,
                    path: "/p".into()
                },
                ca_bundle: Some(b"ca".to_vec()),
            }
        );
        assert!(a1.ignore_failures && a1.reinvoke_if_needed);
        assert_eq!((a1.timeout, a1.side_effects), (Duration::from_secs(3), Some(SideEffects::None)));
        assert!(matches!(a1.namespace_selector, Selector::Parsed(_)));
        assert!(matches!(a1.object_selector, Selector::Everything));
        // Defaults: Fail, 10 s, Never.
        let b1 = &hooks[2];
        assert!(!b1.ignore_failures && !b1.reinvoke_if_needed);
        assert_eq!((b1.timeout, b1.side_effects), (Duration::from_secs(10), None));
        assert_eq!(hooks[1].side_effects, Some(SideEffects::Some));
    }
}
