//! The policies in force (upstream `policy/generic/policy_source.go`): ValidatingAdmissionPolicies and their
//! bindings listed and watched through the registry, every change turned into an immutable snapshot swapped in
//! whole: one hook per policy that has bindings (policies by name, their bindings by name), a policy compiled again
//! only when its object changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::Value;

use super::matcher::MatchResources;
use super::validator::Policy;
use crate::admission::webhook::predicates::Selector;
use crate::registry::{ListParams, Registry, WatchEvent, meta_str};

/// A binding's `validationActions` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Deny,
    Warn,
    Audit,
}

/// A binding's `paramRef`.
#[derive(Debug, Clone)]
pub struct ParamRef {
    pub name: String,
    pub namespace: String,
    pub selector: Option<Selector>,
    /// `parameterNotFoundAction: Deny` (the v1 default).
    pub deny_not_found: bool,
}

/// A compiled ValidatingAdmissionPolicyBinding.
#[derive(Debug)]
pub struct Binding {
    pub name: String,
    pub policy_name: String,
    pub param_ref: Option<ParamRef>,
    pub match_resources: Option<MatchResources>,
    pub actions: Vec<Action>,
}

impl Binding {
    pub fn compile(obj: &Value) -> Arc<Binding> {
        let spec = &obj["spec"];
        let param_ref = spec.get("paramRef").filter(|p| p.is_object()).map(|p| ParamRef {
            name: p["name"].as_str().unwrap_or_default().to_string(),
            namespace: p["namespace"].as_str().unwrap_or_default().to_string(),
            selector: p.get("selector").filter(|s| !s.is_null()).map(|s| Selector::from_json(Some(s))),
            deny_not_found: p["parameterNotFoundAction"] != "Allow",
        });
        let actions = spec["validationActions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| match a.as_str()? {
                "Deny" => Some(Action::Deny),
                "Warn" => Some(Action::Warn),
                "Audit" => Some(Action::Audit),
                _ => None,
            })
            .collect();
        Arc::new(Binding {
            name: meta_str(obj, "name").unwrap_or_default().to_string(),
            policy_name: spec["policyName"].as_str().unwrap_or_default().to_string(),
            param_ref,
            match_resources: spec.get("matchResources").filter(|m| m.is_object()).map(MatchResources::from_json),
            actions,
        })
    }
}

/// A policy with its bindings (upstream `PolicyHook`).
#[derive(Debug, Clone)]
pub struct Hook {
    pub policy: Arc<Policy>,
    pub bindings: Vec<Arc<Binding>>,
}

/// The hooks in force.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub hooks: Vec<Hook>,
}

/// The current snapshot and what it was built from.
#[derive(Default)]
pub struct Source {
    snap: ArcSwap<Snapshot>,
    state: std::sync::Mutex<State>,
    synced: tokio::sync::watch::Sender<(bool, bool)>,
}

#[derive(Default)]
struct State {
    /// Policies by name: (resourceVersion, compiled).
    policies: BTreeMap<String, (String, Arc<Policy>)>,
    /// Bindings by name.
    bindings: BTreeMap<String, Arc<Binding>>,
}

impl Source {
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snap.load()
    }

    /// Replaces the objects of one kind (policies or bindings) and rebuilds the snapshot.
    pub fn set(&self, policies: bool, objects: &BTreeMap<String, Value>) {
        let Ok(mut st) = self.state.lock() else { return };
        if policies {
            let mut next = BTreeMap::new();
            for (name, obj) in objects {
                let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
                let compiled = match st.policies.get(name) {
                    Some((old_rv, p)) if old_rv == rv => p.clone(),
                    _ => Policy::compile(obj),
                };
                next.insert(name.clone(), (rv.to_string(), compiled));
            }
            st.policies = next;
        } else {
            st.bindings = objects.iter().map(|(n, o)| (n.clone(), Binding::compile(o))).collect();
        }
        let mut by_policy: HashMap<&str, Vec<Arc<Binding>>> = HashMap::new();
        for b in st.bindings.values() {
            by_policy.entry(b.policy_name.as_str()).or_default().push(b.clone());
        }
        let hooks = st
            .policies
            .iter()
            .filter_map(|(name, (_, p))| {
                let bindings = by_policy.remove(name.as_str())?;
                Some(Hook { policy: p.clone(), bindings })
            })
            .collect();
        self.snap.store(Arc::new(Snapshot { hooks }));
        drop(st);
        self.synced.send_modify(|(p, b)| {
            if policies {
                *p = true;
            } else {
                *b = true;
            }
        });
    }

    /// Whether both kinds have been listed once.
    pub fn synced(&self) -> bool {
        let (p, b) = *self.synced.borrow();
        p && b
    }

    /// Waits up to `max` for the first lists.
    pub async fn wait_synced(&self, max: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::time::timeout(max, rx.wait_for(|(p, b)| *p && *b)).await.is_ok_and(|r| r.is_ok())
    }
}

/// Feeds `source` from both resources until `stop` fires.
pub fn spawn(registry: Registry, source: Arc<Source>, stop: tokio::sync::watch::Receiver<bool>) {
    for (plural, policies) in [("validatingadmissionpolicies", true), ("validatingadmissionpolicybindings", false)] {
        let Some(res) = api_types::resources::find("admissionregistration.k8s.io", "v1", plural) else {
            tracing::error!(plural, "admission policies are not in the resource table");
            continue;
        };
        let (registry, source, mut stop) = (registry.clone(), source.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = follow(&registry, res, |objects| source.set(policies, objects)) => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// Lists and watches one resource forever, relisting when the watch ends; `changed` gets every object by name
/// after each batch of events.
pub async fn follow(
    registry: &Registry,
    res: &'static api_types::Resource,
    mut changed: impl FnMut(&BTreeMap<String, Value>),
) {
    loop {
        let page = match registry.list(res, None, &ListParams::default()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(resource = res.plural, error = %e, "list failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut objects = BTreeMap::new();
        for item in &page.items {
            if let Ok(o) = item.value() {
                objects.insert(meta_str(&o, "name").unwrap_or_default().to_string(), o);
            }
        }
        changed(&objects);
        let p = ListParams { resource_version: Some(page.resource_version.to_string()), ..Default::default() };
        let mut rx = match registry.watch(res, None, p, false).await {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(resource = res.plural, error = %e, "watch failed; relisting");
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
                        objects.insert(meta_str(&o, "name").unwrap_or_default().to_string(), (*o).clone());
                    }
                    WatchEvent::Deleted(o) => {
                        objects.remove(meta_str(&o, "name").unwrap_or_default());
                    }
                    WatchEvent::Bookmark(_) => {}
                    WatchEvent::Error(e) => {
                        tracing::info!(resource = res.plural, error = %e, "watch ended");
                        relist = true;
                    }
                }
            }
            changed(&objects);
            if relist {
                break;
            }
        }
    }
}
