//! Field ownership and server-side apply, as upstream's `k8s.io/apimachinery/pkg/util/managedfields` over
//! structured-merge-diff: every write through the API records in `metadata.managedFields` which manager set which
//! fields (operation Update), and `application/apply-patch+yaml` merges a configuration by list and map types,
//! drops what the applier stopped setting and nobody else owns, and refuses (409) to change fields another manager
//! owns unless forced (operation Apply).
//!
//! The manager of a request travels with it as a task-local [`Request`], scoped by `api::serve` for the resource
//! endpoints and their status and scale subresources; writes without one (the apiserver's own) keep managedFields
//! as they are.

pub mod conflict;
pub mod fieldpath;
pub mod fieldsv1;
pub mod lastapplied;
pub mod managers;
pub mod scalehandler;
pub mod typed;

use std::future::Future;

use api_types::{ApiError, Resource};
use serde_json::Value;

use conflict::Conflict;
use fieldpath::{Set, field};
use managers::{Entry, Managed, Operation};
use typed::Ty;

/// The manager behind a request.
#[derive(Debug, Clone)]
pub struct Request {
    /// `fieldManager`, else the User-Agent up to its first `/`.
    pub manager: String,
    /// The apiVersion the client wrote in.
    pub api_version: String,
    /// The subresource the client wrote (`status`, `scale`), recorded on the entry.
    pub subresource: String,
    /// An apply: the object carries the managedFields the apply computed; the registry records no update.
    pub apply: bool,
}

tokio::task_local! {
    static REQUEST: Request;
}

/// Runs `f` with `req` as the manager of its writes.
pub async fn scope<F: Future>(req: Request, f: F) -> F::Output {
    REQUEST.scope(req, f).await
}

/// The manager of the current request, if any.
pub fn current() -> Option<Request> {
    REQUEST.try_with(Request::clone).ok()
}

/// Upstream's `managerOrUserAgent`: the `fieldManager` query, else the User-Agent's first segment (before `/`),
/// at most 128 characters.
pub fn manager_of(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let ua = user_agent.unwrap_or_default();
    let first = ua.split('/').next().unwrap_or_default();
    first.chars().take(128).collect()
}

/// Upstream's validation of the `fieldManager` and `force` options (422 on `<kind>.meta.k8s.io ""`, `kind` being
/// CreateOptions, UpdateOptions or PatchOptions): required for apply, at most 128 bytes, printable; `force` only
/// with apply.
pub fn check_options(
    kind: &str,
    field_manager: Option<&str>,
    force: Option<&str>,
    apply: bool,
) -> Result<(), ApiError> {
    use api_types::Cause;
    let mut causes = Vec::new();
    if !apply && force.is_some() {
        causes.push(Cause::forbidden("force", "may not be specified for non-apply patch"));
    }
    if apply && field_manager.is_none_or(str::is_empty) {
        causes.push(Cause {
            reason: "FieldValueRequired",
            field: "fieldManager".into(),
            message: "Required value: is required for apply patch".into(),
        });
    }
    if let Some(m) = field_manager {
        if m.len() > 128 {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                field: "fieldManager".into(),
                message: "Too long: may not be more than 128 bytes".into(),
            });
        }
        if m.chars().any(char::is_control) {
            causes.push(Cause::invalid("fieldManager", &Value::String(m.to_string()), "must be printable"));
        }
    }
    if causes.is_empty() { Ok(()) } else { Err(ApiError::invalid("meta.k8s.io", kind, "", causes)) }
}

/// The paths upstream's `stripMetaManager` never records.
fn strip_set() -> &'static Set {
    static STRIP: std::sync::LazyLock<Set> = std::sync::LazyLock::new(|| {
        let mut s = Set::new();
        s.insert(&[field("apiVersion")]);
        s.insert(&[field("kind")]);
        s.insert(&[field("metadata")]);
        for f in [
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        ] {
            s.insert(&[field("metadata"), field(f)]);
        }
        s
    });
    &STRIP
}

/// The fields a write of `subresource` cannot change (the strategy resets them), left out of ownership as upstream's
/// `GetResetFields`: `status` for the main endpoint of a kind with a status subresource, `spec` for `status`.
pub fn reset_fields(has_status: bool, subresource: Option<&str>) -> Set {
    let mut s = Set::new();
    match subresource {
        None if has_status => s.insert(&[field("status")]),
        Some("status") => s.insert(&[field("spec")]),
        _ => {}
    }
    s
}

/// The type of a resource's objects: its CRD's structural schema, the built-in table, or deduced.
pub fn type_of<'a>(res: &Resource, schema: Option<&'a crate::apiextensions::schema::structural::Structural>) -> Ty<'a> {
    match schema {
        Some(s) if res.custom => Ty::of_schema(s),
        _ => Ty::of_kind(res.group, res.version, res.kind),
    }
}

fn now() -> String {
    crate::strategy::now_rfc3339()
}

fn set_managed(obj: &mut Value, managed: &Managed) {
    let encoded = managed.encode();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if encoded.as_array().is_some_and(Vec::is_empty) {
            meta.shift_remove("managedFields");
        } else {
            meta.insert("managedFields".into(), encoded);
        }
    }
}

/// Whether the request asks for its managedFields to be reset (`managedFields: []`, or one empty entry).
fn is_reset(requested: Option<&Value>) -> bool {
    match requested {
        Some(Value::Array(a)) if a.is_empty() => true,
        Some(Value::Array(a)) if a.len() == 1 => a[0].as_object().is_some_and(|o| o.is_empty()),
        _ => false,
    }
}

/// The managers an update starts from (upstream's `decodeLiveOrNew`): the request's own managedFields when valid
/// and not from a subresource, an empty list to reset, else the live object's (invalid ones are ignored).
fn live_or_new(live: Option<&Value>, requested: Option<&Value>, subresource: bool) -> Managed {
    let from_live = || live.and_then(|l| Managed::decode(l).ok()).unwrap_or_default();
    if subresource {
        return from_live();
    }
    if is_reset(requested) {
        return Managed::default();
    }
    match requested.map(Managed::decode_list) {
        Some(Ok(m)) if !m.entries.is_empty() => m,
        _ => from_live(),
    }
}

/// Records an Update by `req` of `live` (None: a create) into `new`'s managedFields. `requested` is the
/// managedFields the client sent (taken before the strategy drops them from a create).
pub fn update(
    ty: Ty<'_>,
    reset: &Set,
    live: Option<&Value>,
    new: &mut Value,
    requested: Option<&Value>,
    req: &Request,
) {
    let mut managed = live_or_new(live, requested, !req.subresource.is_empty());
    record_update(ty, reset, live, new, &mut managed, &req.manager, &req.api_version, &req.subresource);
    managed.cap_updaters(managers::MAX_UPDATE_MANAGERS);
    set_managed(new, &managed);
}

/// The structured-merge update: what changed from `live` to `new` moves to `manager`; paths removed leave every
/// manager.
#[allow(clippy::too_many_arguments)]
fn record_update(
    ty: Ty<'_>,
    reset: &Set,
    live: Option<&Value>,
    new: &Value,
    managed: &mut Managed,
    manager: &str,
    api_version: &str,
    subresource: &str,
) {
    let mut cmp = typed::compare(ty, live, new);
    if !reset.is_empty() {
        cmp = cmp.exclude(reset);
    }
    let typed::Comparison { added, modified, removed } = cmp;
    let changed = if modified.is_empty() { added } else { added.union(&modified) };
    for e in managed.entries.iter_mut() {
        e.set = e.set.difference(&changed);
        if !removed.is_empty() {
            e.set = e.set.difference(&removed);
        }
    }
    let mine = changed.difference(strip_set());
    if !mine.is_empty() {
        match managed.find(manager, Operation::Update, api_version, subresource) {
            Some(i) => {
                let e = &mut managed.entries[i];
                e.set = e.set.union(&mine);
                e.time = Some(now());
            }
            None => managed.entries.push(Entry {
                manager: manager.to_string(),
                operation: Operation::Update,
                api_version: api_version.to_string(),
                time: Some(now()),
                subresource: subresource.to_string(),
                set: mine,
            }),
        }
    }
    managed.entries.retain(|e| !e.set.is_empty());
}

/// The object an apply of `config` by `req` makes of `live` (None: the object does not exist yet), with its
/// managedFields; a 409 on conflicts unless `force`.
pub fn apply(
    ty: Ty<'_>,
    reset: &Set,
    live: Option<&Value>,
    config: &Value,
    req: &Request,
    force: bool,
) -> Result<Value, ApiError> {
    if config.pointer("/metadata/managedFields").is_some_and(|m| !m.is_null()) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    if !config.is_object() {
        return Err(ApiError::bad_request("apply configuration must be an object"));
    }
    let mut managed = live.and_then(|l| Managed::decode(l).ok()).unwrap_or_default();
    // Upstream's skipNonAppliedManager: an object no one manages yet is first owned by `before-first-apply`.
    if let Some(l) = live
        && managed.entries.is_empty()
    {
        record_update(ty, reset, None, l, &mut managed, "before-first-apply", &req.api_version, "");
    }
    match apply_with(ty, reset, live, config, req, managed.clone(), force) {
        Err(conflicts) if lastapplied::conflicts_allowed(ty, live, &req.manager, &conflicts) => {
            apply_with(ty, reset, live, config, req, managed, true).map_err(|c| conflict::error(&c))
        }
        Err(conflicts) => Err(conflict::error(&conflicts)),
        Ok(v) => Ok(v),
    }
    .map(|mut merged| {
        lastapplied::update_annotation(live, &req.manager, config, &mut merged);
        merged
    })
}

fn apply_with(
    ty: Ty<'_>,
    reset: &Set,
    live: Option<&Value>,
    config: &Value,
    req: &Request,
    mut managed: Managed,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut merged = typed::merge(ty, live, Some(config)).unwrap_or_else(|| config.clone());
    let applied = typed::to_set(ty, config).difference(strip_set()).exclude(reset);
    let me = managed.find(&req.manager, Operation::Apply, "", &req.subresource);
    let last = me.map(|i| managed.entries[i].set.clone()).unwrap_or_default();
    let entry = Entry {
        manager: req.manager.clone(),
        operation: Operation::Apply,
        api_version: req.api_version.clone(),
        time: me.and_then(|i| managed.entries[i].time.clone()),
        subresource: req.subresource.clone(),
        set: applied,
    };
    let me = match me {
        Some(i) => {
            managed.entries[i] = entry;
            i
        }
        None => {
            managed.entries.push(entry);
            managed.entries.len() - 1
        }
    };
    if !last.is_empty() {
        let owned = managed.entries.iter().fold(Set::new(), |acc, e| acc.union(&e.set));
        typed::remove_unowned(ty, &mut merged, &last, &owned);
    }
    let cmp = typed::compare(ty, live, &merged).exclude(reset);
    let changed = cmp.added.union(&cmp.modified);
    let mut conflicts = Vec::new();
    for (i, e) in managed.entries.iter().enumerate() {
        if i == me {
            continue;
        }
        for path in e.set.intersection(&changed).paths() {
            conflicts.push(Conflict { manager: e.describe(), path });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for (i, e) in managed.entries.iter_mut().enumerate() {
        if i != me {
            e.set = e.set.difference(&changed).difference(&cmp.removed);
        }
    }
    let changed_object = match live {
        Some(l) => {
            let mut a = l.clone();
            let mut b = merged.clone();
            for v in [&mut a, &mut b] {
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.shift_remove("managedFields");
                }
            }
            a != b
        }
        None => true,
    };
    if changed_object || managed.entries[me].time.is_none() {
        managed.entries[me].time = Some(now());
    }
    managed.entries.retain(|e| !e.set.is_empty());
    managed.cap_updaters(managers::MAX_UPDATE_MANAGERS);
    if !merged.get("metadata").is_some_and(Value::is_object) {
        merged["metadata"] = Value::Object(Default::default());
    }
    set_managed(&mut merged, &managed);
    Ok(merged)
}

#[cfg(test)]
mod tests;
