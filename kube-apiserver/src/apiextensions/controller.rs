//! The CRD controllers that run inside the apiserver, as upstream's apiextensions-apiserver runs them: the serving
//! snapshot is rebuilt from every CRD change; the naming controller accepts names that no other CRD of the group
//! holds (`NamesAccepted`); the establishing controller marks accepted CRDs `Established`; the finalizer deletes a
//! deleted CRD's instances, then drops its `customresourcecleanup` finalizer.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::ApiError;
use api_types::resources::{Resource, find};
use serde_json::{Value, json};

use super::crd::{CLEANUP_FINALIZER, set_condition};
use super::served::{Served, Snapshot, condition_true};
use crate::registry::{DeleteParams, ListParams, Registry, WatchEvent, meta_str};

fn crd_resource() -> &'static Resource {
    find("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("the CRD resource is in the table")
}

/// Starts the controllers; they stop when `stop` turns true.
pub fn spawn(registry: Registry, served: Arc<Served>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let finalizing = Arc::new(Mutex::new(HashSet::new()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = run(&registry, &served, &finalizing) => {
                    if let Err(e) = r {
                        tracing::info!(error = %e, "CRD watch ended; relisting");
                    }
                }
                _ = stop.changed() => return,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

async fn run(
    registry: &Registry,
    served: &Arc<Served>,
    finalizing: &Arc<Mutex<HashSet<String>>>,
) -> Result<(), ApiError> {
    let res = crd_resource();
    let page = registry.list(res, None, &ListParams::default()).await?;
    let mut crds: BTreeMap<String, Value> = BTreeMap::new();
    for item in &page.items {
        let crd = item.value()?;
        crds.insert(meta_str(&crd, "name").unwrap_or_default().to_string(), crd);
    }
    sync(registry, served, &crds, finalizing).await;
    served.synced.store(true, std::sync::atomic::Ordering::Release);
    let p = ListParams { resource_version: Some(page.resource_version.to_string()), ..Default::default() };
    let mut events = registry.watch(res, None, p, false).await?;
    while let Some(ev) = events.recv().await {
        let mut batch = vec![ev];
        while let Ok(more) = events.try_recv() {
            batch.push(more);
        }
        for ev in batch {
            match ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    crds.insert(meta_str(&o, "name").unwrap_or_default().to_string(), (*o).clone());
                }
                WatchEvent::Deleted(o) => {
                    crds.remove(meta_str(&o, "name").unwrap_or_default());
                }
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(e) => return Err(e),
            }
        }
        sync(registry, served, &crds, finalizing).await;
    }
    Ok(())
}

/// Serves what the CRDs say now, then brings each CRD's status to what the controllers want.
async fn sync(
    registry: &Registry,
    served: &Arc<Served>,
    crds: &BTreeMap<String, Value>,
    finalizing: &Arc<Mutex<HashSet<String>>>,
) {
    let all: Vec<Value> = crds.values().cloned().collect();
    served.store(Snapshot::build(&all));
    for crd in crds.values() {
        if crd.pointer("/metadata/deletionTimestamp").is_some() {
            let has_finalizer = crd
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER));
            let uid = meta_str(crd, "uid").unwrap_or_default().to_string();
            if has_finalizer && finalizing.lock().map(|mut f| f.insert(uid.clone())).unwrap_or(false) {
                let (registry, served, finalizing, crd) =
                    (registry.clone(), served.clone(), finalizing.clone(), crd.clone());
                tokio::spawn(async move {
                    finalize(&registry, &served, crd).await;
                    if let Ok(mut f) = finalizing.lock() {
                        f.remove(&uid);
                    }
                });
            }
            continue;
        }
        let mut want = crd.clone();
        names_and_conditions(&mut want, crds.values());
        if want.get("status") != crd.get("status") {
            write_status(registry, want).await;
        }
    }
}

async fn write_status(registry: &Registry, crd: Value) {
    let name = meta_str(&crd, "name").unwrap_or_default().to_string();
    // A stale resourceVersion is a 409: the next event brings the newer object and another try.
    if let Err(e) = registry.update(crd_resource(), None, &name, Some("status"), crd, false).await
        && e.code != 409
    {
        tracing::warn!(crd = name, error = %e, "could not update CRD status");
    }
}

/// The names other CRDs of the group hold: (plurals, singulars and short names; kinds and list kinds).
fn taken_names<'a>(crd: &Value, all: impl Iterator<Item = &'a Value>) -> (HashSet<String>, HashSet<String>) {
    let (mut resources, mut kinds) = (HashSet::new(), HashSet::new());
    let name = meta_str(crd, "name");
    for other in all {
        if meta_str(other, "name") == name || other["spec"]["group"] != crd["spec"]["group"] {
            continue;
        }
        let n = &other["status"]["acceptedNames"];
        for f in ["plural", "singular"] {
            if let Some(s) = n[f].as_str().filter(|s| !s.is_empty()) {
                resources.insert(s.to_string());
            }
        }
        for s in n["shortNames"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            resources.insert(s.to_string());
        }
        for f in ["kind", "listKind"] {
            if let Some(s) = n[f].as_str().filter(|s| !s.is_empty()) {
                kinds.insert(s.to_string());
            }
        }
    }
    (resources, kinds)
}

/// Upstream's `equalToAcceptedOrFresh`.
fn accepted_or_fresh(requested: &str, accepted: &str, used: &HashSet<String>) -> Result<(), String> {
    if requested == accepted || !used.contains(requested) {
        Ok(())
    } else {
        Err(format!("{requested:?} is already in use"))
    }
}

/// The naming and establishing controllers' view of one CRD (upstream `calculateNamesAndConditions`, then
/// `Established` once the names are accepted).
pub fn names_and_conditions<'a>(crd: &mut Value, all: impl Iterator<Item = &'a Value>) {
    let (resources, kinds) = taken_names(crd, all);
    let requested = crd["spec"]["names"].clone();
    if !crd.get("status").is_some_and(Value::is_object) {
        crd["status"] = json!({});
    }
    let accepted = crd["status"]["acceptedNames"].clone();
    let mut names = if accepted.is_object() { accepted.clone() } else { json!({}) };
    let mut conflict: Option<(&str, String)> = None;
    let s = |v: &Value, f: &str| v[f].as_str().unwrap_or_default().to_string();
    for (field, reason, used) in
        [("plural", "PluralConflict", &resources), ("singular", "SingularConflict", &resources)]
    {
        match accepted_or_fresh(&s(&requested, field), &s(&accepted, field), used) {
            Ok(()) => names[field] = json!(s(&requested, field)),
            Err(e) => conflict = Some((reason, e)),
        }
    }
    if requested["shortNames"] != accepted["shortNames"] {
        let mine: Vec<&str> =
            accepted["shortNames"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let errs: Vec<String> = requested["shortNames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|sn| !mine.contains(sn))
            .filter_map(|sn| accepted_or_fresh(sn, "", &resources).err())
            .collect();
        if errs.is_empty() {
            match requested.get("shortNames") {
                Some(v) if !v.is_null() => names["shortNames"] = v.clone(),
                _ => {
                    if let Some(o) = names.as_object_mut() {
                        o.remove("shortNames");
                    }
                }
            }
        } else {
            conflict = Some(("ShortNamesConflict", errs.join(", ")));
        }
    }
    for (field, reason) in [("kind", "KindConflict"), ("listKind", "ListKindConflict")] {
        match accepted_or_fresh(&s(&requested, field), &s(&accepted, field), &kinds) {
            Ok(()) => names[field] = json!(s(&requested, field)),
            Err(e) => conflict = Some((reason, e)),
        }
    }
    match requested.get("categories") {
        Some(c) if !c.is_null() => names["categories"] = c.clone(),
        _ => {
            if let Some(o) = names.as_object_mut() {
                o.remove("categories");
            }
        }
    }
    crd["status"]["acceptedNames"] = names;
    match &conflict {
        Some((reason, message)) => set_condition(crd, "NamesAccepted", "False", reason, message),
        None => set_condition(crd, "NamesAccepted", "True", "NoConflicts", "no conflicts found"),
    }
    if conflict.is_none() {
        // The establishing controller: accepted names make the CRD Established.
        if !condition_true(crd, "Established") {
            set_condition(crd, "Established", "True", "InitialNamesAccepted", "the initial names have been accepted");
        }
    } else if !crd["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Established")) {
        set_condition(crd, "Established", "False", "NotAccepted", "not all names are accepted");
    }
}

/// Deletes every instance of a deleted CRD, then removes the cleanup finalizer (upstream `crd_finalizer.go`).
async fn finalize(registry: &Registry, served: &Arc<Served>, mut crd: Value) {
    let name = meta_str(&crd, "name").unwrap_or_default().to_string();
    set_condition(
        &mut crd,
        "Terminating",
        "True",
        "InstanceDeletionInProgress",
        "CustomResource deletion is in progress",
    );
    write_status(registry, crd.clone()).await;
    loop {
        let (cond, done) = delete_instances(registry, served, &crd).await;
        let Ok(mut cur) = registry.get(crd_resource(), None, &name).await else { return };
        if meta_str(&cur, "uid") != meta_str(&crd, "uid") {
            return;
        }
        set_condition(&mut cur, "Terminating", cond.0, cond.1, &cond.2);
        write_status(registry, cur).await;
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    // Drop the finalizer; with no finalizers left the CRD goes.
    for _ in 0..16 {
        let Ok(mut cur) = registry.get(crd_resource(), None, &name).await else { return };
        if let Some(f) = cur.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
            f.retain(|x| x != CLEANUP_FINALIZER);
        }
        match registry.update(crd_resource(), None, &name, None, cur, false).await {
            Err(e) if e.code == 409 => continue,
            Err(e) => tracing::warn!(crd = name, error = %e, "could not remove the CRD cleanup finalizer"),
            Ok(_) => {}
        }
        return;
    }
}

/// One pass of deleting a CRD's objects: the Terminating condition to record and whether none are left.
async fn delete_instances(
    registry: &Registry,
    served: &Arc<Served>,
    crd: &Value,
) -> ((&'static str, &'static str, String), bool) {
    let snap = served.load();
    let (group, plural) = (
        crd["spec"]["group"].as_str().unwrap_or_default(),
        crd["spec"]["names"]["plural"].as_str().unwrap_or_default(),
    );
    let versions = crd["spec"]["versions"].as_array().cloned().unwrap_or_default();
    let res =
        versions.iter().filter_map(|v| v["name"].as_str()).find_map(|v| snap.custom(group, v, plural).map(|c| c.res));
    let Some(res) = res else {
        // Never served (names never accepted): nothing can have been stored.
        return (("False", "InstanceDeletionCompleted", "removed all instances".into()), true);
    };
    let page = match registry.list(res, None, &ListParams::default()).await {
        Ok(p) => p,
        Err(e) => {
            return (("True", "InstanceDeletionFailed", format!("could not list instances: {}", e.message)), false);
        }
    };
    let mut errors = Vec::new();
    for item in &page.items {
        let Ok(obj) = item.value() else { continue };
        let (ns, n) = (meta_str(&obj, "namespace"), meta_str(&obj, "name").unwrap_or_default());
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        if let Err(e) = registry.delete(res, ns, n, &DeleteParams::default()).await
            && e.code != 404
        {
            errors.push(e.message);
        }
    }
    if !errors.is_empty() {
        return (
            ("True", "InstanceDeletionFailed", format!("could not issue all deletes: {}", errors.join(", "))),
            false,
        );
    }
    for _ in 0..12 {
        match registry.list(res, None, &ListParams::default()).await {
            Ok(p) if p.items.is_empty() => {
                return (("False", "InstanceDeletionCompleted", "removed all instances".into()), true);
            }
            _ => tokio::time::sleep(Duration::from_secs(5)).await,
        }
    }
    (
        (
            "True",
            "InstanceDeletionCheck",
            "could not confirm zero CustomResources remaining: timed out waiting for the condition".into(),
        ),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str, short: &[&str]) -> Value {
        json!({"metadata": {"name": name}, "spec": {"group": "example.com", "names": {"plural": plural, "singular": plural.trim_end_matches('s'), "kind": kind, "listKind": format!("{kind}List"), "shortNames": short}}})
    }

    fn cond(crd: &Value, ty: &str) -> (String, String, String) {
        let c = crd["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == ty).unwrap();
        (
            c["status"].as_str().unwrap().into(),
            c["reason"].as_str().unwrap().into(),
            c["message"].as_str().unwrap().into(),
        )
    }

    #[test]
    fn names_accepted_then_established() {
        let mut a = crd("widgets.example.com", "widgets", "Widget", &["wd"]);
        names_and_conditions(&mut a, std::iter::empty());
        assert_eq!(a["status"]["acceptedNames"]["plural"], "widgets");
        assert_eq!(a["status"]["acceptedNames"]["shortNames"], json!(["wd"]));
        assert_eq!(cond(&a, "NamesAccepted"), ("True".into(), "NoConflicts".into(), "no conflicts found".into()));
        assert_eq!(
            cond(&a, "Established"),
            ("True".into(), "InitialNamesAccepted".into(), "the initial names have been accepted".into())
        );
        let types: Vec<&str> =
            a["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["NamesAccepted", "Established"]);
    }

    #[test]
    fn conflicts_keep_names_unaccepted() {
        let mut a = crd("widgets.example.com", "widgets", "Widget", &["wd"]);
        names_and_conditions(&mut a, std::iter::empty());
        // Another CRD asking for the same kind and short name.
        let mut b = crd("gadgets.example.com", "gadgets", "Widget", &["wd"]);
        b["spec"]["names"]["listKind"] = json!("GadgetList");
        names_and_conditions(&mut b, std::iter::once(&a));
        assert_eq!(cond(&b, "NamesAccepted").0, "False");
        assert_eq!(cond(&b, "NamesAccepted").1, "KindConflict");
        assert_eq!(cond(&b, "NamesAccepted").2, "\"Widget\" is already in use");
        assert_eq!(b["status"]["acceptedNames"]["plural"], "gadgets", "non-conflicting names are accepted");
        assert!(b["status"]["acceptedNames"].get("kind").is_none());
        assert_eq!(
            cond(&b, "Established"),
            ("False".into(), "NotAccepted".into(), "not all names are accepted".into())
        );
        // A plural used as another's short name.
        let mut c = crd("wds.example.com", "wd", "Wd", &[]);
        c["spec"]["names"]["singular"] = json!("wdone");
        names_and_conditions(&mut c, std::iter::once(&a));
        assert_eq!(cond(&c, "NamesAccepted").1, "PluralConflict");
        // Another group is no conflict.
        let mut d = crd("widgets.other.io", "widgets", "Widget", &["wd"]);
        d["spec"]["group"] = json!("other.io");
        names_and_conditions(&mut d, std::iter::once(&a));
        assert_eq!(cond(&d, "NamesAccepted").0, "True");
    }
}
