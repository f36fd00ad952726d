//! The resources one apiserver serves: the static built-in table plus the versions of every CustomResourceDefinition,
//! as an immutable snapshot swapped whole when a CRD changes (upstream's crdHandler `customStorage` map and the
//! discovery controller's view), so a request reads it with one lock-free clone of an `Arc`.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use api_types::resources::{self, RESOURCES, Resource, Subresource};
use serde_json::Value;

/// The verbs of a custom resource, in upstream's order.
const CR_VERBS: &[&str] = &["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"];

/// How `/scale` reads and writes a custom resource (the CRD's `subresources.scale`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One served version of a CRD.
#[derive(Debug)]
pub struct CustomVersion {
    pub res: &'static Resource,
    /// The CRD's name (`<plural>.<group>`) and uid: a CRD re-created under the same name is another definition.
    pub crd_name: String,
    pub crd_uid: String,
    /// The version's `schema.openAPIV3Schema` (Null when none).
    pub schema: Value,
    /// `additionalPrinterColumns` as written in the CRD.
    pub printer_columns: Vec<Value>,
    pub scale: Option<ScalePaths>,
    /// Discovery lists a version only once its CRD is Established.
    pub established: bool,
    /// The CRD is being deleted: creates are refused.
    pub terminating: bool,
    /// The version the CRD stores objects in.
    pub storage_version: String,
    /// The conversion webhook (strategy `Webhook`); None: versions differ only in apiVersion.
    pub conversion: Option<Arc<super::conversion::Webhook>>,
    /// The structural schema has defaults: reads apply them too.
    pub has_defaults: bool,
    /// The structural schema (None when the CRD's schema is not structural: nothing is pruned or defaulted).
    pub structural: Option<super::schema::structural::Structural>,
    pub validator: Option<super::schema::validate::Validator>,
    /// The compiled `x-kubernetes-validations` rules (None when the schema has none).
    pub cel: Option<super::cel::validator::Validator>,
    /// The Table columns (Name, then the printer columns, or Age).
    pub table: Option<super::printer::TableConvertor>,
}

/// One immutable view of everything served.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Custom versions by (group, version, plural).
    custom: HashMap<(String, String, String), Arc<CustomVersion>>,
    /// Custom groups in discovery order (by name, after the built-ins) with their versions, highest priority first.
    custom_groups: Vec<(&'static str, Vec<&'static str>)>,
}

impl Snapshot {
    /// The resource a request names, built-in or custom (served and with accepted names).
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        resources::find(group, version, plural).or_else(|| self.custom(group, version, plural).map(|c| c.res))
    }

    pub fn custom(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<CustomVersion>> {
        self.custom.get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    /// Whether any custom resource version is served.
    pub fn has_custom(&self) -> bool {
        !self.custom.is_empty()
    }

    /// The CRD version behind a custom resource row.
    pub fn custom_of(&self, res: &Resource) -> Option<&Arc<CustomVersion>> {
        if !res.custom {
            return None;
        }
        self.custom(res.group, res.version, res.plural)
    }

    /// Every group with its versions (preferred first): the built-ins in table order, then the custom groups.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out = resources::groups();
        for (g, vs) in &self.custom_groups {
            out.push((g, vs.clone()));
        }
        out
    }

    /// The resources of one group-version that discovery lists.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<&'static Resource> {
        let mut out: Vec<&'static Resource> = resources::in_group_version(group, version).collect();
        let mut custom: Vec<&'static Resource> = self
            .custom
            .values()
            .filter(|c| c.established && c.res.group == group && c.res.version == version)
            .map(|c| c.res)
            .collect();
        custom.sort_by_key(|r| r.plural);
        out.extend(custom);
        out
    }

    /// Every resource in category `cat` at its group's preferred version (`kubectl get all`).
    pub fn in_category(&self, cat: &str) -> Vec<&'static Resource> {
        let groups = self.groups();
        let preferred = |r: &Resource| groups.iter().any(|(g, vs)| *g == r.group && vs.first() == Some(&r.version));
        let mut out: Vec<&'static Resource> =
            RESOURCES.iter().filter(|r| r.categories.contains(&cat) && preferred(r)).collect();
        let mut custom: Vec<&'static Resource> = self
            .custom
            .values()
            .filter(|c| c.established && c.res.categories.contains(&cat) && preferred(c.res))
            .map(|c| c.res)
            .collect();
        custom.sort_by_key(|r| (r.group, r.plural));
        out.extend(custom);
        out
    }

    /// Builds the view of a set of CRD objects.
    pub fn build(crds: &[Value]) -> Snapshot {
        let mut custom = HashMap::new();
        let mut groups: HashMap<&'static str, Vec<&'static str>> = HashMap::new();
        for crd in crds {
            for cv in versions_of(crd) {
                let r = cv.res;
                if cv.established {
                    let vs = groups.entry(r.group).or_default();
                    if !vs.contains(&r.version) {
                        vs.push(r.version);
                    }
                }
                custom.insert((r.group.to_string(), r.version.to_string(), r.plural.to_string()), Arc::new(cv));
            }
        }
        let mut custom_groups: Vec<(&'static str, Vec<&'static str>)> = groups.into_iter().collect();
        for (_, vs) in &mut custom_groups {
            vs.sort_by(|a, b| compare_kube_versions(b, a));
        }
        custom_groups.sort_by_key(|(g, _)| *g);
        Snapshot { custom, custom_groups }
    }
}

/// The condition `type` of a CRD has status True.
pub fn condition_true(crd: &Value, ty: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
}

/// The served versions of a CRD whose names are accepted (upstream serves a CRD once NamesAccepted or Established
/// is True), with the accepted names.
fn versions_of(crd: &Value) -> Vec<CustomVersion> {
    let established = condition_true(crd, "Established");
    if !established && !condition_true(crd, "NamesAccepted") {
        return Vec::new();
    }
    let spec = &crd["spec"];
    let names = &crd["status"]["acceptedNames"];
    let (Some(group), Some(plural), Some(kind)) =
        (spec["group"].as_str(), names["plural"].as_str(), names["kind"].as_str())
    else {
        return Vec::new();
    };
    if plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let singular = names["singular"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let singular = singular.unwrap_or_else(|| kind.to_lowercase());
    let short_names = strings(&names["shortNames"]);
    let categories = strings(&names["categories"]);
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let terminating = crd.pointer("/metadata/deletionTimestamp").is_some();
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage_version =
        versions.iter().find(|v| v["storage"] == true).and_then(|v| v["name"].as_str()).unwrap_or_default();
    let mut out = Vec::new();
    for v in versions.iter().filter(|v| v["served"] == true) {
        let Some(version) = v["name"].as_str() else { continue };
        let subs = &v["subresources"];
        let mut subresources = Vec::new();
        if subs.get("status").is_some_and(Value::is_object) {
            subresources.push(Subresource { name: "status", kind: intern(kind), group: "", version: "", verbs: GPU });
        }
        let scale = subs.get("scale").filter(|s| s.is_object()).map(|s| ScalePaths {
            spec_replicas: s["specReplicasPath"].as_str().unwrap_or_default().to_string(),
            status_replicas: s["statusReplicasPath"].as_str().unwrap_or_default().to_string(),
            label_selector: s["labelSelectorPath"].as_str().map(str::to_string),
        });
        if scale.is_some() {
            subresources.push(resources::scale());
        }
        let res = intern_resource(Resource {
            group: intern(group),
            version: intern(version),
            kind: intern(kind),
            plural: intern(plural),
            singular: intern(&singular),
            namespaced,
            short_names: intern_list(&short_names),
            categories: intern_list(&categories),
            verbs: CR_VERBS,
            subresources: intern_subresources(subresources),
            storage: intern(&format!("{group}/{plural}")),
            custom: true,
            selectable_fields: intern_list(&selectable_fields(v)),
        });
        let schema = v.pointer("/schema/openAPIV3Schema").cloned().unwrap_or(Value::Null);
        let columns = v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default();
        let structural = schema.is_object().then(|| super::schema::structural::Structural::new(&schema).ok()).flatten();
        let has_defaults = structural.as_ref().is_some_and(super::schema::defaulting::has_defaults);
        out.push(CustomVersion {
            cel: structural.as_ref().and_then(super::cel::validator::Validator::new),
            structural,
            validator: schema.is_object().then(|| super::schema::validate::Validator::new(&schema).ok()).flatten(),
            table: super::printer::TableConvertor::new(&columns).ok(),
            res,
            crd_name: crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
            crd_uid: crd.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string(),
            schema: v.pointer("/schema/openAPIV3Schema").cloned().unwrap_or(Value::Null),
            printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
            scale,
            established,
            terminating,
            storage_version: storage_version.to_string(),
            conversion: super::conversion::Webhook::of(crd),
            has_defaults,
        });
    }
    out
}

const GPU: &[&str] = &["get", "patch", "update"];

/// Interned strings and rows: a custom resource row must be `&'static` like the built-in table's, so each distinct
/// value is leaked once and reused; memory grows with distinct definitions, never with CRD churn.
#[derive(Default)]
struct Interner {
    strings: HashSet<&'static str>,
    lists: HashSet<&'static [&'static str]>,
    subresources: HashSet<&'static [Subresource]>,
    resources: HashMap<String, &'static Resource>,
}

/// A version's `selectableFields` as field selector names (`.spec.color` -> `spec.color`).
fn selectable_fields(version: &Value) -> Vec<String> {
    version["selectableFields"]
        .as_array()
        .map(|a| {
            a.iter().filter_map(|f| f["jsonPath"].as_str()).map(|p| p.trim_start_matches('.').to_string()).collect()
        })
        .unwrap_or_default()
}

fn interner() -> std::sync::MutexGuard<'static, Interner> {
    static INTERNER: OnceLock<Mutex<Interner>> = OnceLock::new();
    INTERNER.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

fn intern(s: &str) -> &'static str {
    let mut i = interner();
    if let Some(found) = i.strings.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    i.strings.insert(leaked);
    leaked
}

fn intern_list(items: &[String]) -> &'static [&'static str] {
    let items: Vec<&'static str> = items.iter().map(|s| intern(s)).collect();
    let mut i = interner();
    if let Some(found) = i.lists.get(items.as_slice()) {
        return found;
    }
    let leaked: &'static [&'static str] = Box::leak(items.into_boxed_slice());
    i.lists.insert(leaked);
    leaked
}

fn intern_subresources(subs: Vec<Subresource>) -> &'static [Subresource] {
    let mut i = interner();
    if let Some(found) = i.subresources.get(subs.as_slice()) {
        return found;
    }
    let leaked: &'static [Subresource] = Box::leak(subs.into_boxed_slice());
    i.subresources.insert(leaked);
    leaked
}

fn intern_resource(r: Resource) -> &'static Resource {
    let key = format!("{r:?}");
    let mut i = interner();
    i.resources.entry(key).or_insert_with(|| Box::leak(Box::new(r)))
}

/// Orders versions as upstream's `version.CompareKubeAwareVersionStrings`: GA (`v2` > `v1`), then beta, then alpha
/// (by major, then by the number after the stage), then anything else alphabetically.
pub fn compare_kube_versions(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u64, u8, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok().filter(|m| *m > 0)?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((major, 3, 0));
        }
        for (stage, rank) in [("beta", 2u8), ("alpha", 1u8)] {
            if let Some(n) = tail.strip_prefix(stage)
                && !n.is_empty()
                && n.bytes().all(|c| c.is_ascii_digit())
            {
                return Some((major, rank, n.parse().ok()?));
            }
        }
        None
    }
    match (parse(a), parse(b)) {
        (Some((ma, ra, na)), Some((mb, rb, nb))) => ra.cmp(&rb).then(ma.cmp(&mb)).then(na.cmp(&nb)),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => b.cmp(a),
    }
}

/// The snapshot of one apiserver, replaced whole on every CRD change.
#[derive(Default)]
pub struct Served {
    snap: RwLock<Arc<Snapshot>>,
    /// Bumped on every rebuild (OpenAPI and discovery caches key on it).
    generation: std::sync::atomic::AtomicU64,
    /// The CRD watch has delivered its first list (`/readyz` check `poststarthook/crd-informer-synced`).
    pub synced: std::sync::atomic::AtomicBool,
}

impl Served {
    pub fn load(&self) -> Arc<Snapshot> {
        self.snap.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn store(&self, snap: Snapshot) {
        *self.snap.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snap);
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(established: bool) -> Value {
        let cond = if established { "Established" } else { "NamesAccepted" };
        json!({
            "metadata": {"name": "widgets.example.com", "uid": "u1"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}}},
                    {"name": "v1alpha1", "served": false, "storage": false}]},
            "status": {"acceptedNames": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"], "categories": ["all"]},
                "conditions": [{"type": cond, "status": "True"}]}
        })
    }

    #[test]
    fn kube_aware_version_order() {
        let mut vs = vec!["v1alpha1", "foo", "v2", "v1beta2", "v1", "v10beta1", "v1beta1", "bar", "v11alpha2"];
        vs.sort_by(|a, b| compare_kube_versions(b, a));
        assert_eq!(vs, ["v2", "v1", "v10beta1", "v1beta2", "v1beta1", "v11alpha2", "v1alpha1", "bar", "foo"]);
    }

    #[test]
    fn served_versions_rows_and_discovery() {
        let snap = Snapshot::build(&[crd(true)]);
        let v1 = snap.find("example.com", "v1", "widgets").unwrap();
        assert!(v1.custom && v1.namespaced);
        assert_eq!((v1.kind, v1.singular, v1.storage), ("Widget", "widget", "example.com/widgets"));
        assert_eq!(v1.short_names, ["wd"]);
        assert_eq!(v1.subresources.iter().map(|s| s.name).collect::<Vec<_>>(), ["status", "scale"]);
        assert!(snap.find("example.com", "v1beta1", "widgets").unwrap().subresources.is_empty());
        assert!(snap.find("example.com", "v1alpha1", "widgets").is_none(), "unserved version");
        assert_eq!(snap.custom_of(v1).unwrap().storage_version, "v1");
        let groups = snap.groups();
        assert_eq!(groups.last().unwrap(), &("example.com", vec!["v1", "v1beta1"]));
        assert_eq!(snap.in_category("all").last().unwrap().plural, "widgets");
        // The same definition again gives the same interned row.
        let again = Snapshot::build(&[crd(true)]);
        assert!(std::ptr::eq(v1, again.find("example.com", "v1", "widgets").unwrap()));
        // Served (names accepted) but not yet in discovery until Established.
        let installing = Snapshot::build(&[crd(false)]);
        assert!(installing.find("example.com", "v1", "widgets").is_some());
        assert!(installing.in_group_version("example.com", "v1").is_empty());
        assert!(!installing.groups().iter().any(|(g, _)| *g == "example.com"));
    }
}
