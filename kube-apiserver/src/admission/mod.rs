//! What happens around the registry's create and delete for particular kinds, as upstream's admission plugins
//! do: the system namespaces cannot be deleted, and pods get their service account and its token volume
//! ([`serviceaccount`]), their LimitRange defaults ([`limitranger`]) and RuntimeClass ([`runtimeclass`]). Dynamic
//! admission ([`policy`], then [`webhook`]) runs after the built-in plugins of each phase, its expressions on the
//! admission [`cel`] environment; [`resourcequota`] charges what passed to the namespace's quotas.

pub mod cel;
pub mod certificates;
pub mod connect;
pub mod limitranger;
pub mod noderestriction;
pub mod policy;
pub mod resourcequota;
pub mod runtimeclass;
pub mod serviceaccount;
pub mod webhook;

use crate::auth::UserInfo;

tokio::task_local! {
    /// The user of the API request being served (unset for the apiserver's own writes, which admission skips).
    pub static REQUEST_USER: UserInfo;
    /// Warnings for the response of the API request being served (`Warning: 299 - "..."` headers), as upstream's
    /// `warning.AddWarning`: admission webhooks add theirs.
    pub static WARNINGS: std::cell::RefCell<Vec<String>>;
}

/// Adds a warning to the response of the request being served (repeated warnings are sent once).
pub fn add_warning(w: &str) {
    let _ = WARNINGS.try_with(|ws| {
        let mut ws = ws.borrow_mut();
        if !ws.iter().any(|x| x == w) {
            ws.push(w.to_string());
        }
    });
}

/// What a write does, as upstream's `admission.Operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    /// A connect subresource (`pods/exec`, `pods/attach`, `pods/portforward`, the proxies): see [`connect`].
    Connect,
}

impl Operation {
    /// Upstream's name (`CREATE`, `UPDATE`, `DELETE`, `CONNECT`), as webhook rules and AdmissionReviews spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// One write as validating admission sees it (`admission.Attributes`).
pub struct Request<'a> {
    pub operation: Operation,
    pub resource: &'a Resource,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The object to be stored (None for deletes).
    pub object: Option<&'a Value>,
    /// The stored object (None for creates).
    pub old: Option<&'a Value>,
    pub user: &'a UserInfo,
    /// `dryRun=All`: nothing will be stored.
    pub dry_run: bool,
}

impl Request<'_> {
    /// The group, version and kind of the request's object when it concerns `res` (the request's resource or one
    /// it matched as): `v1` options of a connect request (`PodExecOptions`), `autoscaling/v1` `Scale` for the
    /// scale subresource, else the resource's own.
    pub fn kind_of(&self, res: &Resource) -> (&'static str, &'static str, &'static str) {
        match (self.operation, self.subresource) {
            (Operation::Connect, sub) => match connect::options_kind(res.plural, sub) {
                Some(kind) => ("", "v1", kind),
                None => (res.group, res.version, res.kind),
            },
            (_, "scale") => ("autoscaling", "v1", "Scale"),
            _ => (res.group, res.version, res.kind),
        }
    }
}

tokio::task_local! {
    /// Set around the write a `scale` subresource request makes to its workload: admission webhooks and policies
    /// see that write as upstream's scale REST shows it to them, a `Scale` update of the subresource.
    pub static SCALE: ScaleView;
}

/// How a workload shows as its `Scale`, and where the Scale's `spec.replicas` goes back.
#[derive(Clone)]
pub struct ScaleView {
    pub view: Arc<dyn Fn(&Value) -> Value + Send + Sync>,
    /// The workload's replicas as a JSON pointer (`/spec/replicas`, or a CRD's specReplicasPath).
    pub replicas: String,
}

/// The scale view of the write being admitted, when it is the write of a scale request.
fn scale_view(r: &Request<'_>) -> Option<ScaleView> {
    if !r.subresource.is_empty() || r.operation != Operation::Update {
        return None;
    }
    SCALE.try_with(Clone::clone).ok()
}

/// Admission of the writes of API requests, called by the registry: the built-in validating plugins, then the
/// webhooks of each phase. The webhook methods return None, having allocated nothing, when no webhook applies.
pub trait Validating: Send + Sync {
    /// The built-in validating plugins, right before a write is stored.
    fn validate(&self, r: &Request<'_>) -> Result<(), ApiError>;

    /// ValidatingAdmissionPolicy and the validating webhooks, after [`Self::validate`].
    fn validate_webhooks<'a>(&'a self, _r: &'a Request<'a>) -> Option<webhook::BoxFuture<'a, Result<(), ApiError>>> {
        None
    }

    /// Mutating webhooks on the object about to be written (None for a delete), before the strategy runs.
    fn mutate_webhooks<'a>(
        &'a self,
        _r: &'a Request<'a>,
        _object: Option<&'a mut Value>,
    ) -> Option<webhook::BoxFuture<'a, Result<(), ApiError>>> {
        None
    }
}

/// The validating plugins in force, run by the registry before every write of an API request.
pub struct Plugins {
    pub server: std::sync::Weak<Apiserver>,
}

impl Validating for Plugins {
    fn validate(&self, r: &Request<'_>) -> Result<(), ApiError> {
        let Some(server) = self.server.upgrade() else { return Ok(()) };
        let on = |name: &str| server.admission_enabled(name);
        if !server.opts.allow_privileged {
            privileged_containers(r)?;
        }
        if r.resource.group == "rbac.authorization.k8s.io" && r.operation != Operation::Delete {
            use crate::authorization::rbac::escalation;
            let authorize = |a: &crate::authorization::Attributes| server.authz.allows(a);
            let object = r.object.unwrap_or(&Value::Null);
            let check = match r.resource.plural {
                "roles" | "clusterroles" => escalation::check_role_write,
                _ => escalation::check_binding_write,
            };
            check(&authorize, &server.rbac, r.user, r.resource.plural, r.namespace, object, r.old)?;
        }
        if on(noderestriction::NAME) && r.operation != Operation::Connect {
            let op = match r.operation {
                Operation::Create => noderestriction::Operation::Create,
                Operation::Update => noderestriction::Operation::Update,
                Operation::Delete | Operation::Connect => noderestriction::Operation::Delete,
            };
            let name = match r.object {
                Some(o) if r.operation == Operation::Create => meta_str(o, "name").unwrap_or(r.name),
                _ => r.name,
            };
            let req = noderestriction::Request {
                user: r.user,
                operation: op,
                api_group: r.resource.group,
                resource: r.resource.plural,
                subresource: r.subresource,
                namespace: r.namespace,
                name,
                object: r.object,
                old_object: r.old,
            };
            noderestriction::admit(&req, &CacheLookup(&server))?;
        }
        if on(limitranger::NAME) && r.subresource.is_empty() {
            let checked = match (r.resource.group, r.resource.plural, r.operation, r.object) {
                ("", "pods", Operation::Create, Some(pod)) => {
                    Some(limitranger::validate_pod(&limit_ranges(&server, r.namespace), pod))
                }
                ("", "persistentvolumeclaims", Operation::Create | Operation::Update, Some(pvc)) => {
                    Some(limitranger::validate_pvc(&limit_ranges(&server, r.namespace), pvc))
                }
                _ => None,
            };
            if let Some(Err(why)) = checked {
                let name = r.object.and_then(|o| meta_str(o, "name")).unwrap_or(r.name);
                return Err(crate::authorization::new_forbidden(r.resource.group, r.resource.plural, name, &why));
            }
        }
        if is(r.resource, "certificates.k8s.io", "certificatesigningrequests") {
            if on(certificates::APPROVAL) {
                certificates::approval(&server.authz, r)?;
            }
            if on(certificates::SIGNING) {
                certificates::signing(&server.authz, r)?;
            }
            if on(certificates::SUBJECT_RESTRICTION) {
                certificates::subject_restriction(r)?;
            }
        }
        Ok(())
    }

    /// ValidatingAdmissionPolicy, the validating webhooks, then ResourceQuota (upstream's plugin order). The
    /// write of a scale request goes to policies and webhooks as a `Scale` update of the subresource.
    fn validate_webhooks<'a>(&'a self, r: &'a Request<'a>) -> Option<webhook::BoxFuture<'a, Result<(), ApiError>>> {
        let server = self.server.upgrade()?;
        let scale = scale_view(r);
        let dynamic = Request { subresource: if scale.is_some() { "scale" } else { r.subresource }, ..*r };
        let policies = server.policies.candidates(&*server, &dynamic);
        let webhooks = server.webhooks.validating_candidates(&*server, &dynamic);
        let quotas = resourcequota::candidates(&server, r);
        if policies.is_none() && webhooks.is_none() && quotas.is_none() {
            return None;
        }
        Some(Box::pin(async move {
            let views = scale.map(|s| (r.object.map(|o| (s.view)(o)), r.old.map(|o| (s.view)(o))));
            let dynamic = match &views {
                Some((object, old)) => Request { object: object.as_ref(), old: old.as_ref(), ..dynamic },
                None => dynamic,
            };
            if let Some(snap) = policies {
                server.policies.validate(&*server, snap, &dynamic).await?;
            }
            if let Some(snap) = webhooks {
                server.webhooks.validate(&*server, snap, &dynamic).await?;
            }
            // ResourceQuota is the last validating plugin, as upstream orders it: only what passed everything else
            // is charged.
            if let Some(names) = quotas {
                resourcequota::admit(&server, r, &names).await?;
            }
            Ok(())
        }))
    }

    fn mutate_webhooks<'a>(
        &'a self,
        r: &'a Request<'a>,
        object: Option<&'a mut Value>,
    ) -> Option<webhook::BoxFuture<'a, Result<(), ApiError>>> {
        let server = self.server.upgrade()?;
        let Some(scale) = scale_view(r) else {
            let snap = server.webhooks.mutating_candidates(&*server, r)?;
            return Some(Box::pin(async move { server.webhooks.mutate(&*server, snap, r, object).await }));
        };
        // A scale request's write: the webhooks mutate the Scale, whose replicas go back to the workload.
        let probe = Request { subresource: "scale", ..*r };
        let snap = server.webhooks.mutating_candidates(&*server, &probe)?;
        Some(Box::pin(async move {
            let Some(object) = object else { return Ok(()) };
            let old = r.old.map(|o| (scale.view)(o));
            let mut scaled = (scale.view)(object);
            let before = scaled["spec"]["replicas"].clone();
            let sr = Request { subresource: "scale", old: old.as_ref(), ..*r };
            server.webhooks.mutate(&*server, snap, &sr, Some(&mut scaled)).await?;
            let after = &scaled["spec"]["replicas"];
            if *after != before
                && let Some(at) = object.pointer_mut(&scale.replicas)
            {
                *at = after.clone();
            }
            Ok(())
        }))
    }
}

/// Where a kind keeps its pod spec.
fn pod_spec_path(res: &Resource) -> Option<(&'static str, &'static str)> {
    Some(match (res.group, res.plural) {
        ("", "pods") => ("/spec", "spec"),
        ("", "podtemplates") => ("/template/spec", "template.spec"),
        ("", "replicationcontrollers")
        | ("apps", "replicasets" | "deployments" | "daemonsets" | "statefulsets")
        | ("batch", "jobs") => ("/spec/template/spec", "spec.template.spec"),
        ("batch", "cronjobs") => ("/spec/jobTemplate/spec/template/spec", "spec.jobTemplate.spec.template.spec"),
        _ => return None,
    })
}

/// The privileged containers of a pod spec: (field path, privileged).
fn privileged_fields(spec: Option<&Value>, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in spec.and_then(|s| s.get(list)).and_then(Value::as_array).into_iter().flatten().enumerate() {
            if c.pointer("/securityContext/privileged").and_then(Value::as_bool) == Some(true) {
                out.push(format!("{path}.{list}[{i}].securityContext.privileged"));
            }
        }
    }
    out
}

/// Upstream's pod validation under `--allow-privileged=false` (its default): a container asking for
/// `privileged: true` is refused with "Forbidden: disallowed by cluster policy". An update is refused only when it
/// adds one (what is stored already was allowed when it was written).
fn privileged_containers(r: &Request<'_>) -> Result<(), ApiError> {
    let Some((pointer, path)) = pod_spec_path(r.resource) else { return Ok(()) };
    if !(r.subresource.is_empty() || r.subresource == "ephemeralcontainers") {
        return Ok(());
    }
    let Some(obj) = r.object else { return Ok(()) };
    let old = privileged_fields(r.old.and_then(|o| o.pointer(pointer)), path);
    let causes: Vec<api_types::status::Cause> = privileged_fields(obj.pointer(pointer), path)
        .into_iter()
        .filter(|f| !old.contains(f))
        .map(|f| api_types::status::Cause::forbidden(f, "disallowed by cluster policy"))
        .collect();
    if causes.is_empty() {
        return Ok(());
    }
    let name = meta_str(obj, "name").unwrap_or(r.name);
    Err(ApiError::invalid(r.resource.group, r.resource.kind, name, causes))
}

/// What NodeRestriction reads: the watch caches, and the authorizer chain.
pub struct CacheLookup<'a>(pub &'a Apiserver);

/// The resources NodeRestriction reads (their caches start with the apiserver when the plugin is on).
pub const NODE_RESTRICTION_READS: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "nodes"),
    ("", "persistentvolumeclaims"),
    ("", "persistentvolumes"),
    ("storage.k8s.io", "csidrivers"),
];

impl noderestriction::Lookup for CacheLookup<'_> {
    fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let (group, plural) = *NODE_RESTRICTION_READS.iter().find(|(_, p)| *p == resource)?;
        let res = api_types::resources::find(group, "v1", plural)?;
        let cache = self.0.registry.cacher.started(res)?;
        let ns = (!namespace.is_empty()).then_some(namespace);
        cache.get(&crate::registry::key(res, ns, name)).map(|o| (*o).clone())
    }

    fn authorize(&self, a: &crate::authorization::Attributes) -> crate::authorization::Decision {
        self.0.authz.authorize(a).0
    }
}

/// NodeRestriction on a subresource body that is not stored (an Eviction, a TokenRequest).
pub fn admit_subresource(
    server: &Apiserver,
    res: &Resource,
    sub: &str,
    ns: &str,
    name: &str,
    body: &Value,
) -> Result<(), ApiError> {
    let Some(user) = current_user() else { return Ok(()) };
    if !server.admission_enabled(noderestriction::NAME) {
        return Ok(());
    }
    let req = noderestriction::Request {
        user: &user,
        operation: noderestriction::Operation::Create,
        api_group: res.group,
        resource: res.plural,
        subresource: sub,
        namespace: ns,
        name,
        object: Some(body),
        old_object: None,
    };
    noderestriction::admit(&req, &CacheLookup(server))
}

/// The user of the request being served, if this is an API request.
pub fn current_user() -> Option<UserInfo> {
    REQUEST_USER.try_with(|u| u.clone()).ok()
}

use std::sync::Arc;

use api_types::{ApiError, Resource};
use serde_json::{Value, json};

use crate::registry::{DeleteParams, Deleted, meta_str};
use crate::server::Apiserver;

/// Upstream's admission plugins on by default (`--enable-admission-plugins` adds, `--disable-...` removes).
pub const DEFAULT_ON: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
];

/// Every plugin name upstream 1.33 knows (others are refused at start).
pub const KNOWN: &[&str] = &[
    "AlwaysAdmit",
    "AlwaysDeny",
    "AlwaysPullImages",
    "DenyServiceExternalIPs",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "ImagePolicyWebhook",
    "LimitPodHardAntiAffinityTopology",
    "MutatingAdmissionPolicy",
    "NamespaceAutoProvision",
    "NamespaceExists",
    "NodeRestriction",
    "OwnerReferencesPermissionEnforcement",
    "PodNodeSelector",
    "PodTolerationRestriction",
    "PodTopologyLabels",
];

/// Upstream's CSR strategy on create: the requester's identity goes into the spec (whatever the client wrote
/// there) and the status starts empty, so nobody creates a pre-approved request.
fn requester(csr: &mut Value) {
    let user = current_user().unwrap_or_default();
    if let Some(spec) = csr.get_mut("spec").and_then(Value::as_object_mut) {
        for k in ["username", "uid", "groups", "extra"] {
            spec.remove(k);
        }
        if !user.username.is_empty() {
            spec.insert("username".into(), json!(user.username));
        }
        if !user.uid.is_empty() {
            spec.insert("uid".into(), json!(user.uid));
        }
        if !user.groups.is_empty() {
            spec.insert("groups".into(), json!(user.groups));
        }
        if !user.extra.is_empty() {
            spec.insert("extra".into(), json!(user.extra));
        }
    }
    csr["status"] = json!({});
}

/// Which plugins run, from the two flags; an unknown name is an error, as upstream's.
pub fn enabled_plugins(enable: &[String], disable: &[String]) -> Result<Vec<String>, String> {
    for n in enable.iter().chain(disable) {
        if !DEFAULT_ON.contains(&n.as_str()) && !KNOWN.contains(&n.as_str()) {
            return Err(format!("admission-control plugin {n:?} is unknown"));
        }
    }
    let mut on: Vec<String> = DEFAULT_ON.iter().map(|s| s.to_string()).filter(|p| !disable.contains(p)).collect();
    for p in enable {
        if !on.contains(p) {
            on.push(p.clone());
        }
    }
    Ok(on)
}

fn is(res: &Resource, group: &str, plural: &str) -> bool {
    res.group == group && res.plural == plural
}

/// Namespaces upstream refuses to delete.
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// The LimitRanges of a namespace, from the watch cache (started with the apiserver when LimitRanger is on).
fn limit_ranges(server: &Apiserver, ns: &str) -> Vec<Value> {
    api_types::resources::find("", "v1", "limitranges")
        .and_then(|res| server.registry.cacher.started(res))
        .and_then(|cache| cache.list(Some(ns), &Default::default()).ok())
        .map(|(ranges, _)| ranges)
        .unwrap_or_default()
}

/// RuntimeClass admission of a pod naming a class (read from storage).
async fn runtime_class(server: &Apiserver, pod: &mut Value) -> Result<(), ApiError> {
    let Some(name) = pod.pointer("/spec/runtimeClassName").and_then(Value::as_str).map(str::to_string) else {
        return Ok(());
    };
    let Some(classes) = api_types::resources::find("node.k8s.io", "v1", "runtimeclasses") else { return Ok(()) };
    let class = match server.registry.get(classes, None, &name).await {
        Ok(c) => Some(c),
        Err(e) if e.code == 404 => None,
        Err(e) => return Err(e),
    };
    runtimeclass::admit(pod, &name, class.as_ref()).map_err(|why| {
        let pod_name = meta_str(pod, "name").unwrap_or_default();
        crate::authorization::new_forbidden("", "pods", pod_name, &why)
    })
}

/// The Priority admission plugin: `spec.priority` (and `preemptionPolicy`) from the pod's PriorityClass, or from
/// the global default class, else 0. An unknown class is refused with 403 as upstream.
async fn priority(server: &Arc<Apiserver>, pod: &mut Value) -> Result<(), ApiError> {
    let Some(classes) = api_types::resources::find("scheduling.k8s.io", "v1", "priorityclasses") else {
        return Ok(());
    };
    let name = pod.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or_default().to_string();
    // From the watch cache, as upstream's plugin reads its informer; a class the cache has not seen yet is read
    // from storage.
    let cache = server.registry.cacher.cache(classes).await?;
    let class = if name.is_empty() {
        let (all, _) = cache.list(None, &Default::default())?;
        all.into_iter().find(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
    } else if let Some(c) = cache.get(&crate::registry::key(classes, None, &name)) {
        Some((*c).clone())
    } else {
        match server.registry.get(classes, None, &name).await {
            Ok(c) => Some(c),
            Err(e) if e.code == 404 => {
                let pod_name = meta_str(pod, "name").unwrap_or_default();
                return Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!("pods \"{pod_name}\" is forbidden: no PriorityClass with name {name} was found"),
                ));
            }
            Err(e) => return Err(e),
        }
    };
    let value = class.as_ref().and_then(|c| c.get("value")).and_then(Value::as_i64).unwrap_or(0);
    let policy = class
        .as_ref()
        .and_then(|c| c.get("preemptionPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("PreemptLowerPriority")
        .to_string();
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(c) = &class {
            spec.insert("priorityClassName".into(), json!(meta_str(c, "name").unwrap_or_default()));
        }
        spec.insert("priority".into(), json!(value));
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

pub async fn create(
    server: &Arc<Apiserver>,
    res: &Resource,
    ns: Option<&str>,
    obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    create_stored(server, res, ns, obj, dry_run).await.map(|c| c.object)
}

/// [`create`], also giving the bytes the object was stored as.
pub async fn create_stored(
    server: &Arc<Apiserver>,
    res: &Resource,
    ns: Option<&str>,
    mut obj: Value,
    dry_run: bool,
) -> Result<crate::registry::Created, ApiError> {
    if is(res, "", "pods") && server.admission_enabled(limitranger::NAME) {
        // Upstream defaults a pod when decoding it, before admission: a limit without a request is the request.
        crate::defaults::requests_from_limits(&mut obj);
        limitranger::default_pod(&limit_ranges(server, ns.unwrap_or("default")), &mut obj);
    }
    if is(res, "", "pods") && server.admission_enabled(serviceaccount::NAME) {
        let ns = ns.unwrap_or("default");
        let wanted = serviceaccount::wanted_account(&obj);
        let account = crate::auth::lookup(&server.registry, "", "serviceaccounts", Some(ns), &wanted).await;
        serviceaccount::admit(&mut obj, ns, account.as_ref())?;
    }
    if is(res, "", "pods") {
        priority(server, &mut obj).await?;
    }
    if is(res, "", "pods") && server.admission_enabled(runtimeclass::NAME) {
        runtime_class(server, &mut obj).await?;
    }
    if is(res, "certificates.k8s.io", "certificatesigningrequests") {
        requester(&mut obj);
    }
    mutating_webhooks_on_create(server, res, ns, &mut obj, dry_run).await?;
    server.registry.create_stored(res, ns, obj, dry_run).await
}

/// The mutating webhooks of a create, after the built-in mutating plugins (upstream's order). The object goes out
/// as upstream sends it: with its apiVersion, kind, namespace and defaults.
async fn mutating_webhooks_on_create(
    server: &Arc<Apiserver>,
    res: &Resource,
    ns: Option<&str>,
    obj: &mut Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let ns = ns.filter(|_| res.namespaced).unwrap_or_default();
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let probe = |user: &UserInfo| {
        let r = Request {
            operation: Operation::Create,
            resource: res,
            subresource: "",
            namespace: ns,
            name: &name,
            object: None,
            old: None,
            user,
            dry_run,
        };
        server.webhooks.mutating_candidates(&**server, &r)
    };
    // The common case, no webhook for this write, costs no copy of the user.
    let Some(snap) = REQUEST_USER.try_with(probe).ok().flatten() else { return Ok(()) };
    let user = current_user().unwrap_or_default();
    if let Some(o) = obj.as_object_mut() {
        o.entry("apiVersion").or_insert_with(|| json!(res.api_version()));
        o.entry("kind").or_insert_with(|| json!(res.kind));
    }
    if res.namespaced && !ns.is_empty() && obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"]["namespace"] = json!(ns);
    }
    crate::defaults::apply(res, obj, true);
    let r = Request {
        operation: Operation::Create,
        resource: res,
        subresource: "",
        namespace: ns,
        name: &name,
        object: None,
        old: None,
        user: &user,
        dry_run,
    };
    server.webhooks.mutate(&**server, snap, &r, Some(obj)).await
}

pub async fn delete(
    server: &Arc<Apiserver>,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    p: &DeleteParams,
) -> Result<Deleted, ApiError> {
    if is(res, "", "namespaces") && PROTECTED_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(format!(
            "namespaces {name:?} is forbidden: this namespace may not be deleted"
        )));
    }
    server.registry.delete(res, ns, name, p).await
}
