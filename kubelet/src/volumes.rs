//! Volumes and environment: emptyDir (also medium Memory), hostPath, configMap, secret, downwardAPI and projected
//! volumes (with bound service account tokens from [`crate::token`], so `kube-api-access-*` volumes give pods
//! their token, CA and namespace) set up under `<root-dir>/pods/<uid>/volumes/`, written atomically (a `..data` symlink swapped over a
//! fresh timestamped directory, as upstream's AtomicWriter) so updates of configMaps and secrets reach mounted
//! files; volumes of a pod with an `fsGroup` given to that group ([`ownership`]); and container environment from values, fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef, envFrom.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub mod ownership;

use client::Client;
use proto::cri::{KeyValue, Mount};
use serde_json::Value;

use crate::token::TokenManager;

/// Why a container cannot be configured (upstream's CreateContainerConfigError).
pub type ConfigError = (String, String);

fn config_error(msg: String) -> ConfigError {
    ("CreateContainerConfigError".into(), msg)
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// The value of a downward API field path (`metadata.labels['app']`, `status.podIP`, ...).
pub fn field_path(pod: &Value, path: &str, pod_ip: &str, host_ip: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("metadata.labels['").or_else(|| path.strip_prefix("metadata.annotations['")) {
        let key = rest.strip_suffix("']")?;
        let map = if path.starts_with("metadata.labels") { "labels" } else { "annotations" };
        return Some(
            pod.pointer(&format!("/metadata/{map}"))
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        );
    }
    let render_map = |m: Option<&Value>| {
        let mut lines: Vec<String> = m
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default())).collect())
            .unwrap_or_default();
        lines.sort();
        lines.join("\n")
    };
    Some(match path {
        "metadata.name" => s(pod, "/metadata/name").into(),
        "metadata.namespace" => s(pod, "/metadata/namespace").into(),
        "metadata.uid" => s(pod, "/metadata/uid").into(),
        "metadata.labels" => render_map(pod.pointer("/metadata/labels")),
        "metadata.annotations" => render_map(pod.pointer("/metadata/annotations")),
        "spec.nodeName" => s(pod, "/spec/nodeName").into(),
        "spec.serviceAccountName" => s(pod, "/spec/serviceAccountName").into(),
        "status.podIP" | "status.podIPs" => pod_ip.into(),
        "status.hostIP" | "status.hostIPs" => host_ip.into(),
        _ => return None,
    })
}

async fn get_obj(client: &Client, plural: &str, ns: &str, name: &str) -> Result<Option<Value>, ConfigError> {
    let api = client.api("", "v1", plural).map_err(|e| config_error(e.to_string()))?.namespaced(ns);
    match api.get(name).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code() == Some(404) => Ok(None),
        Err(e) => Err(config_error(e.to_string())),
    }
}

/// The string data of a ConfigMap or Secret (secret values base64-decoded).
fn data_of(obj: &Value, secret: bool) -> BTreeMap<String, Vec<u8>> {
    use base64::Engine;
    let mut out = BTreeMap::new();
    for (k, v) in obj.get("data").and_then(Value::as_object).into_iter().flatten() {
        let s = v.as_str().unwrap_or_default();
        let bytes = if secret {
            base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default()
        } else {
            s.as_bytes().to_vec()
        };
        out.insert(k.clone(), bytes);
    }
    if !secret {
        for (k, v) in obj.get("binaryData").and_then(Value::as_object).into_iter().flatten() {
            out.insert(
                k.clone(),
                base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).unwrap_or_default(),
            );
        }
    }
    out
}

/// The container's environment as upstream's `makeEnvironmentVariables`: envFrom sources first, then `env` in order
/// (later entries win), each `value` expanded (`$(VAR)`) from the variables before it and the service variables;
/// then the service variables the container does not set itself.
pub async fn environment(
    client: &Client,
    pod: &Value,
    c: &Value,
    pod_ip: &str,
    host_ip: &str,
    allocatable: &Value,
    services: &BTreeMap<String, String>,
) -> Result<Vec<KeyValue>, ConfigError> {
    let ns = s(pod, "/metadata/namespace");
    let mut env: Vec<(String, String)> = Vec::new();
    fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
        match env.iter_mut().find(|(k, _)| *k == name) {
            Some(e) => e.1 = value,
            None => env.push((name, value)),
        }
    }
    for from in c.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
        let prefix = s(from, "/prefix");
        let (plural, key, secret) = if from.get("configMapRef").is_some() {
            ("configmaps", "configMapRef", false)
        } else {
            ("secrets", "secretRef", true)
        };
        let name = s(from, &format!("/{key}/name"));
        let optional = from.pointer(&format!("/{key}/optional")).and_then(Value::as_bool).unwrap_or(false);
        match get_obj(client, plural, ns, name).await? {
            Some(obj) => {
                for (k, v) in data_of(&obj, secret) {
                    set(&mut env, format!("{prefix}{k}"), String::from_utf8_lossy(&v).into_owned());
                }
            }
            None if optional => {}
            None => {
                return Err(config_error(format!(
                    "{} \"{name}\" not found",
                    if secret { "secret" } else { "configmap" }
                )));
            }
        }
    }
    for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
        let name = s(e, "/name").to_string();
        let literal = s(e, "/value");
        let value = match e.get("valueFrom") {
            _ if !literal.is_empty() => {
                let declared = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let service = |k: &str| services.get(k).cloned();
                crate::expansion::expand(literal, crate::expansion::lookup(&[&declared, &service]))
            }
            None => String::new(),
            Some(from) => {
                if let Some(f) = from.get("fieldRef") {
                    field_path(pod, s(f, "/fieldPath"), pod_ip, host_ip).unwrap_or_default()
                } else if let Some(r) = from.get("resourceFieldRef") {
                    crate::resources::field_value(pod, c, r, allocatable).map_err(config_error)?
                } else {
                    let (plural, key, secret) = if from.get("configMapKeyRef").is_some() {
                        ("configmaps", "configMapKeyRef", false)
                    } else {
                        ("secrets", "secretKeyRef", true)
                    };
                    let r = &from[key];
                    let optional = r.get("optional").and_then(Value::as_bool).unwrap_or(false);
                    let obj_name = s(r, "/name");
                    let wanted = s(r, "/key");
                    match get_obj(client, plural, ns, obj_name).await?.map(|o| data_of(&o, secret)) {
                        Some(data) => match data.get(wanted) {
                            Some(v) => String::from_utf8_lossy(v).into_owned(),
                            None if optional => continue,
                            None => {
                                return Err(config_error(format!(
                                    "couldn't find key {wanted} in {} {ns}/{obj_name}",
                                    if secret { "Secret" } else { "ConfigMap" }
                                )));
                            }
                        },
                        None if optional => continue,
                        None => {
                            return Err(config_error(format!(
                                "{} \"{obj_name}\" not found",
                                if secret { "secret" } else { "configmap" }
                            )));
                        }
                    }
                }
            }
        };
        set(&mut env, name, value);
    }
    for (k, v) in services {
        if !env.iter().any(|(n, _)| n == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    Ok(env.into_iter().map(|(key, value)| KeyValue { key, value }).collect())
}

/// Writes `files` into `dir` atomically: a new timestamped directory, then the `..data` symlink swapped to it,
/// with each file a symlink through `..data`. Readers never see a half-written set. With the pod's `fs_group`, the
/// volume is given to that group (read-only ownership) before the swap, as upstream's atomic writer's setPerms.
pub fn atomic_write(
    dir: &Path,
    files: &BTreeMap<String, (Vec<u8>, u32)>,
    fs_group: Option<u32>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    let current = std::fs::read_link(&data_link).ok();
    if let Some(cur) = &current {
        let same =
            files.iter().all(|(k, (v, _))| std::fs::read(dir.join(cur).join(k)).ok().as_deref() == Some(v.as_slice()));
        let count = walk(&dir.join(cur)).len();
        if same && count == files.len() {
            return Ok(());
        }
    }
    let stamp = format!("..{}", jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S.%f"));
    let target = dir.join(&stamp);
    for (name, (bytes, mode)) in files {
        let p = target.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, bytes)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
    }
    std::fs::create_dir_all(&target)?;
    if let Some(gid) = fs_group {
        ownership::set_volume_ownership(dir, gid, true, ownership::ChangePolicy::Always)?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, &data_link)?;
    for name in files.keys() {
        let top = name.split('/').next().unwrap_or(name);
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    // Drop entries that left the set, and the old data directory.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with("..") && !files.keys().any(|k| k.split('/').next() == Some(n.as_str())) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(cur) = current {
        let _ = std::fs::remove_dir_all(dir.join(cur));
    }
    Ok(())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Files of a configMap/secret source with `items` and modes applied.
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    src: &Value,
    default_mode: u32,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, String> {
    let mode = src.get("defaultMode").and_then(Value::as_u64).map(|m| m as u32).unwrap_or(default_mode);
    let mut out = BTreeMap::new();
    match src.get("items").and_then(Value::as_array) {
        Some(items) => {
            for it in items {
                let key = s(it, "/key");
                let v = data.get(key).ok_or_else(|| format!("configmap references non-existent config key: {key}"))?;
                let m = it.get("mode").and_then(Value::as_u64).map(|m| m as u32).unwrap_or(mode);
                out.insert(s(it, "/path").to_string(), (v.clone(), m));
            }
        }
        None => {
            for (k, v) in data {
                out.insert(k.clone(), (v.clone(), mode));
            }
        }
    }
    Ok(out)
}

/// A volume that could not be set up (upstream's FailedMount: "MountVolume.SetUp failed for volume ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountError {
    pub volume: String,
    pub message: String,
}

/// Sets up every volume of the pod and returns the host directory of each by name.
pub async fn setup(
    client: &Client,
    root: &Path,
    pod: &Value,
    fields: &FieldSource<'_>,
    tokens: &TokenManager,
) -> Result<BTreeMap<String, PathBuf>, MountError> {
    let base = root.join("pods").join(s(pod, "/metadata/uid")).join("volumes");
    let mut out = BTreeMap::new();
    for v in pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten() {
        let name = s(v, "/name").to_string();
        match setup_volume(client, &base, pod, v, fields, tokens).await {
            Ok(Some(path)) => {
                out.insert(name, path);
            }
            // Other volume types (persistent volumes, CSI) come with storage support.
            Ok(None) => {}
            Err(message) => return Err(MountError { volume: name, message }),
        }
    }
    Ok(out)
}

/// Sets up one volume; None for a type not supported here.
async fn setup_volume(
    client: &Client,
    base: &Path,
    pod: &Value,
    v: &Value,
    fields: &FieldSource<'_>,
    tokens: &TokenManager,
) -> Result<Option<PathBuf>, String> {
    let ns = s(pod, "/metadata/namespace");
    let name = s(v, "/name");
    let dir = |plugin: &str| base.join(format!("kubernetes.io~{plugin}")).join(name);
    let io = |e: std::io::Error| e.to_string();
    let get = async |plural: &str, obj: &str| get_obj(client, plural, ns, obj).await.map_err(|(_, m)| m);
    let fs_group = ownership::fs_group(pod);
    let path = if let Some(ed) = v.get("emptyDir") {
        let d = dir("empty-dir");
        let new = !d.exists();
        std::fs::create_dir_all(&d).map_err(io)?;
        if new {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
        }
        if s(ed, "/medium") == "Memory" && !is_mounted(&d) {
            let size = ed.get("sizeLimit").and_then(Value::as_str).and_then(crate::node::bytes);
            let mut cmd = std::process::Command::new("mount");
            cmd.args(["-t", "tmpfs", "tmpfs"]);
            if let Some(b) = size {
                cmd.args(["-o", &format!("size={b}")]);
            }
            let ok = cmd.arg(&d).status().map(|s| s.success()).unwrap_or(false);
            if !ok {
                return Err("mounting tmpfs failed".into());
            }
        }
        // Once, when the volume is made (upstream's emptyDir SetUp runs once): files the containers create later
        // keep the modes they were given.
        if new && let Some(gid) = fs_group {
            ownership::set_volume_ownership(&d, gid, false, ownership::ChangePolicy::Always).map_err(io)?;
        }
        d
    } else if let Some(hp) = v.get("hostPath") {
        let p = PathBuf::from(s(hp, "/path"));
        match s(hp, "/type") {
            "DirectoryOrCreate" => std::fs::create_dir_all(&p).map_err(io)?,
            "FileOrCreate" if !p.exists() => std::fs::write(&p, b"").map_err(io)?,
            "Directory" if !p.is_dir() => {
                return Err(format!("hostPath type check failed: {} is not a directory", p.display()));
            }
            "File" if !p.is_file() => {
                return Err(format!("hostPath type check failed: {} is not a file", p.display()));
            }
            _ => {}
        }
        p
    } else if let Some(src) = v.get("configMap").or_else(|| v.get("secret")) {
        let secret = v.get("secret").is_some();
        let obj_name = if secret { s(src, "/secretName") } else { s(src, "/name") };
        let optional = src.get("optional").and_then(Value::as_bool).unwrap_or(false);
        let obj = get(if secret { "secrets" } else { "configmaps" }, obj_name).await?;
        let data = match obj {
            Some(o) => data_of(&o, secret),
            None if optional => BTreeMap::new(),
            None => {
                return Err(format!("{} \"{obj_name}\" not found", if secret { "secret" } else { "configmap" }));
            }
        };
        let files = project(&data, src, 0o644)?;
        let d = dir(if secret { "secret" } else { "configmap" });
        atomic_write(&d, &files, fs_group).map_err(io)?;
        d
    } else if let Some(src) = v.get("downwardAPI") {
        let files = downward_files(pod, src, 0o644, fields)?;
        let d = dir("downward-api");
        atomic_write(&d, &files, fs_group).map_err(io)?;
        d
    } else if let Some(src) = v.get("projected") {
        let mut files = BTreeMap::new();
        let mode = src.get("defaultMode").and_then(Value::as_u64).map(|m| m as u32).unwrap_or(0o644);
        for source in src.get("sources").and_then(Value::as_array).into_iter().flatten() {
            if let Some(cm) = source.get("configMap").or_else(|| source.get("secret")) {
                let secret = source.get("secret").is_some();
                let optional = cm.get("optional").and_then(Value::as_bool).unwrap_or(false);
                match get(if secret { "secrets" } else { "configmaps" }, s(cm, "/name")).await? {
                    Some(o) => files.extend(project(&data_of(&o, secret), cm, mode)?),
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "{} \"{}\" not found",
                            if secret { "secret" } else { "configmap" },
                            s(cm, "/name")
                        ));
                    }
                }
            } else if let Some(d) = source.get("downwardAPI") {
                files.extend(downward_files(pod, d, mode, fields)?);
            } else if let Some(tp) = source.get("serviceAccountToken") {
                let (path, token) = service_account_token(pod, tp, mode, tokens).await?;
                files.insert(path, token);
            }
        }
        let d = dir("projected");
        atomic_write(&d, &files, fs_group).map_err(io)?;
        d
    } else {
        return Ok(None);
    };
    Ok(Some(path))
}

/// The file of a projected `serviceAccountToken` source: a token bound to the pod for its service account, with
/// the source's audience (none: the API's) and lifetime (the API's default 3600 s), at `path` with the projected
/// volume's mode (0600 with an fsGroup, as upstream before the volume's ownership is applied).
async fn service_account_token(
    pod: &Value,
    tp: &Value,
    mode: u32,
    tokens: &TokenManager,
) -> Result<(String, (Vec<u8>, u32)), String> {
    let audience = s(tp, "/audience");
    let req = crate::token::TokenRequest {
        namespace: s(pod, "/metadata/namespace").to_string(),
        service_account: s(pod, "/spec/serviceAccountName").to_string(),
        audiences: if audience.is_empty() { Vec::new() } else { vec![audience.to_string()] },
        expiration_seconds: tp.get("expirationSeconds").and_then(Value::as_i64).unwrap_or(3600),
        pod_name: s(pod, "/metadata/name").to_string(),
        pod_uid: s(pod, "/metadata/uid").to_string(),
    };
    let token = tokens.get_service_account_token(&req).await?;
    let mode = if pod.pointer("/spec/securityContext/fsGroup").is_some() { 0o600 } else { mode };
    Ok((s(tp, "/path").to_string(), (token.token.into_bytes(), mode)))
}

/// The files of a downwardAPI volume or projected source: `fieldRef` items and `resourceFieldRef` items (of the
/// container they name, limits defaulting to the node's allocatable), with the item's mode, else the source's
/// `defaultMode`, else `default_mode` (the projected volume's).
fn downward_files(
    pod: &Value,
    src: &Value,
    default_mode: u32,
    fields: &FieldSource<'_>,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, String> {
    let mode = src.get("defaultMode").and_then(Value::as_u64).map(|m| m as u32).unwrap_or(default_mode);
    let mut files = BTreeMap::new();
    for it in src.get("items").and_then(Value::as_array).into_iter().flatten() {
        let value = if let Some(fp) = it.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
            field_path(pod, fp, fields.pod_ip, fields.host_ip).unwrap_or_default()
        } else if let Some(r) = it.get("resourceFieldRef") {
            crate::resources::field_value(pod, &Value::Null, r, fields.allocatable)?
        } else {
            String::new()
        };
        let m = it.get("mode").and_then(Value::as_u64).map(|m| m as u32).unwrap_or(mode);
        files.insert(s(it, "/path").to_string(), (value.into_bytes(), m));
    }
    Ok(files)
}

/// What downward API values are read from besides the pod.
pub struct FieldSource<'a> {
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    /// The node's allocatable resources: the limits of containers that set none.
    pub allocatable: &'a Value,
}

fn is_mounted(p: &Path) -> bool {
    let want = p.display().to_string();
    !mount_points(|m| m == want).is_empty()
}

/// The mount points of this mount namespace that `keep` accepts, read line by line: with a hundred pods
/// `/proc/self/mounts` is hundreds of KB, and reading it whole on every pod teardown made the kubelet's heap grow
/// to its size over and over.
fn mount_points(mut keep: impl FnMut(&str) -> bool) -> Vec<String> {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open("/proc/self/mounts") else { return Vec::new() };
    let mut reader = std::io::BufReader::new(file);
    let (mut line, mut out) = (String::new(), Vec::new());
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if let Some(m) = line.split_whitespace().nth(1).filter(|m| keep(m)) {
            out.push(m.to_string());
        }
        line.clear();
    }
    out
}

/// The sub path of a volume mount: `subPath`, or `subPathExpr` expanded from the container's environment (a
/// reference to a variable that is unset or empty is an error, as upstream's ExpandContainerVolumeMounts).
fn sub_path(m: &Value, envs: &[KeyValue]) -> Result<String, ConfigError> {
    let expr = s(m, "/subPathExpr");
    if expr.is_empty() {
        return Ok(s(m, "/subPath").to_string());
    }
    let mut missing = std::collections::BTreeSet::new();
    let expanded = crate::expansion::expand(expr, |k: &str| {
        let value = envs.iter().rev().find(|e| e.key == k).map(|e| e.value.clone()).unwrap_or_default();
        if value.is_empty() {
            missing.insert(k.to_string());
        }
        value
    });
    if !missing.is_empty() {
        let names: Vec<String> = missing.into_iter().collect();
        return Err(config_error(format!("missing value for {}", names.join(", "))));
    }
    Ok(expanded)
}

/// The host path of `sub` inside the volume at `volume`, made safe as upstream's subpath handling: missing
/// directories are created inside the volume with the volume's mode, symlinks are resolved, and a path that leaves
/// the volume (through a symlink anywhere on the way) is refused.
fn safe_sub_path(volume: &Path, sub: &str, mount: &str, container: &str) -> Result<PathBuf, ConfigError> {
    let create_err = || {
        config_error(format!(
            "failed to create subPath directory for volumeMount \"{mount}\" of container \"{container}\""
        ))
    };
    let prepare_err =
        || config_error(format!("failed to prepare subPath for volumeMount \"{mount}\" of container \"{container}\""));
    let base = std::fs::canonicalize(volume).map_err(|_| prepare_err())?;
    if std::fs::metadata(base.join(sub)).is_err() {
        // Create what is missing one directory at a time; what exists on the way must stay inside the volume.
        let mode = std::fs::metadata(&base).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o755);
        let mut cur = base.clone();
        for seg in sub.split('/').filter(|seg| !seg.is_empty() && *seg != ".") {
            cur.push(seg);
            match std::fs::symlink_metadata(&cur) {
                Ok(_) => {
                    cur = std::fs::canonicalize(&cur).map_err(|_| create_err())?;
                    if !cur.starts_with(&base) || !cur.is_dir() {
                        return Err(create_err());
                    }
                }
                Err(_) => {
                    std::fs::create_dir(&cur).map_err(|_| create_err())?;
                    std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(mode)).map_err(|_| create_err())?;
                }
            }
        }
    }
    let resolved = std::fs::canonicalize(base.join(sub)).map_err(|_| prepare_err())?;
    if !resolved.starts_with(&base) {
        tracing::warn!(mount, container, path = %resolved.display(), "subPath leaves its volume; refused");
        return Err(prepare_err());
    }
    Ok(resolved)
}

/// The CRI mounts of a container from its volumeMounts; `envs` is the container's environment (for
/// `subPathExpr`).
pub fn mounts(c: &Value, volumes: &BTreeMap<String, PathBuf>, envs: &[KeyValue]) -> Result<Vec<Mount>, ConfigError> {
    let mut out = Vec::new();
    for m in c.get("volumeMounts").and_then(Value::as_array).into_iter().flatten() {
        let name = s(m, "/name");
        let Some(host) = volumes.get(name) else {
            return Err(config_error(format!(
                "cannot find volume \"{name}\" to mount into container \"{}\"",
                s(c, "/name")
            )));
        };
        let sub = sub_path(m, envs)?;
        let host_path = if sub.is_empty() {
            host.clone()
        } else {
            if sub.starts_with('/') {
                return Err(config_error(format!("error SubPath `{sub}` must not be an absolute path")));
            }
            if sub.split('/').any(|seg| seg == "..") {
                return Err(config_error(format!("unable to provision SubPath `{sub}`: must not contain '..'")));
            }
            safe_sub_path(host, &sub, name, s(c, "/name"))?
        };
        out.push(Mount {
            container_path: s(m, "/mountPath").into(),
            host_path: host_path.display().to_string(),
            readonly: m.get("readOnly").and_then(Value::as_bool).unwrap_or(false),
            ..Default::default()
        });
    }
    Ok(out)
}

/// Removes a pod's volume directories (unmounting memory-backed ones first).
pub fn teardown(root: &Path, uid: &str) {
    let dir = root.join("pods").join(uid);
    let prefix = dir.display().to_string();
    for m in mount_points(|m| m.starts_with(&prefix)) {
        let _ = std::process::Command::new("umount").arg(&m).status();
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn atomic_writes_swap_data_and_drop_removed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut files =
            BTreeMap::from([("a".to_string(), (b"1".to_vec(), 0o644)), ("b".to_string(), (b"2".to_vec(), 0o600))]);
        atomic_write(dir.path(), &files, None).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "1");
        let mode = std::fs::metadata(dir.path().join("b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        files.remove("b");
        files.insert("a".into(), (b"changed".to_vec(), 0o644));
        atomic_write(dir.path(), &files, None).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "changed");
        assert!(!dir.path().join("b").exists());
        let data_dirs = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("..2"))
            .count();
        assert_eq!(data_dirs, 1, "the old data directory is gone");
    }

    #[test]
    fn downward_fields_and_resources() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "x", "b": "y"}}, "spec": {"nodeName": "n1"}});
        assert_eq!(field_path(&pod, "metadata.labels['app']", "", "").unwrap(), "x");
        assert_eq!(field_path(&pod, "metadata.labels", "", "").unwrap(), "app=\"x\"\nb=\"y\"");
        assert_eq!(field_path(&pod, "status.podIP", "10.1.1.1", "").unwrap(), "10.1.1.1");
        assert!(field_path(&pod, "spec.nope", "", "").is_none());
    }

    /// downwardAPI volumes and projected downwardAPI sources hold resourceFieldRef values (rounded up, limits
    /// defaulting to the node's allocatable); a projected volume's defaultMode applies to its downwardAPI files.
    #[tokio::test]
    async fn downward_api_volumes_with_resources_and_modes() {
        let server = kube_apiserver::testing::TestApiserver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let pod = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1", "labels": {"app": "x"}},
            "spec": {
                "containers": [
                    {"name": "c", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}},
                    {"name": "free"}],
                "volumes": [
                    {"name": "info", "downwardAPI": {"items": [
                        {"path": "cpu_limit", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}},
                        {"path": "cpu_cores", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "0"}},
                        {"path": "memory_limit", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory"}},
                        {"path": "cpu_request", "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu", "divisor": "1m"}},
                        {"path": "free_memory", "resourceFieldRef": {"containerName": "free", "resource": "limits.memory", "divisor": "1Mi"}},
                        {"path": "private", "mode": 0o600, "fieldRef": {"fieldPath": "metadata.name"}}]}},
                    {"name": "all", "projected": {"defaultMode": 0o440, "sources": [
                        {"downwardAPI": {"items": [
                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}}]}},
                    {"name": "broken", "downwardAPI": {"items": [
                        {"path": "x", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}}]}}]}});
        let allocatable = json!({"cpu": "1500m", "memory": "2Gi"});
        let fields = FieldSource { pod_ip: "10.1.1.1", host_ip: "10.0.0.1", allocatable: &allocatable };
        let mut ok = pod.clone();
        ok["spec"]["volumes"].as_array_mut().unwrap().pop();
        let tokens = TokenManager::new(None);
        let vols = setup(&server.client, dir.path(), &ok, &fields, &tokens).await.unwrap();
        let read = |v: &str, f: &str| std::fs::read_to_string(vols[v].join(f)).unwrap();
        assert_eq!(read("info", "cpu_limit"), "250");
        assert_eq!(read("info", "cpu_cores"), "1", "divisor 0 means 1; 250m rounds up to 1");
        assert_eq!(read("info", "memory_limit"), "67108864");
        assert_eq!(read("info", "cpu_request"), "100");
        assert_eq!(read("info", "free_memory"), "2048", "no limit: the node's allocatable");
        assert_eq!(mode(&vols["info"].join("cpu_limit")), 0o644);
        assert_eq!(mode(&vols["info"].join("private")), 0o600);
        assert_eq!(read("all", "labels"), "app=\"x\"");
        assert_eq!(read("all", "mem"), "64");
        assert_eq!(mode(&vols["all"].join("labels")), 0o440, "the projected volume's defaultMode");
        let err = setup(&server.client, dir.path(), &pod, &fields, &tokens).await.unwrap_err();
        assert_eq!(err, MountError { volume: "broken".into(), message: "container nope not found".into() });
        server.stop().await;
    }

    /// A pod with an fsGroup: its emptyDir is the group's, setgid and group-writable, once when made (a file
    /// the container creates later keeps its mode, as upstream's e2e "(non-root,0644,default)" with FSGroup); its
    /// configMap volume's files keep their defaultMode and change group, also after an update of the configMap.
    #[tokio::test]
    async fn fs_group_owns_empty_dir_and_config_map_volumes() {
        use std::os::unix::fs::MetadataExt;
        let server = kube_apiserver::testing::TestApiserver::start().await;
        let cms = server.client.api("", "v1", "configmaps").unwrap().namespaced("default");
        cms.create(&json!({"metadata": {"name": "cm", "namespace": "default"}, "data": {"k": "v1"}})).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pod = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u-fs"},
            "spec": {"securityContext": {"fsGroup": 1234, "runAsUser": 1001}, "containers": [{"name": "c"}],
                "volumes": [{"name": "scratch", "emptyDir": {}},
                    {"name": "config", "configMap": {"name": "cm", "defaultMode": 0o440}}]}});
        let allocatable = json!({});
        let fields = FieldSource { pod_ip: "10.1.1.1", host_ip: "10.0.0.1", allocatable: &allocatable };
        let tokens = TokenManager::new(None);
        let vols = setup(&server.client, dir.path(), &pod, &fields, &tokens).await.unwrap();
        let stat = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            (m.gid(), m.mode() & 0o7777)
        };
        assert_eq!(stat(&vols["scratch"]), (1234, 0o2777));
        let made = vols["scratch"].join("test-file");
        std::fs::write(&made, b"mount-tester new file").unwrap();
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::lchown(&made, None, Some(0)).unwrap();
        setup(&server.client, dir.path(), &pod, &fields, &tokens).await.unwrap();
        assert_eq!(stat(&made), (0, 0o644), "the volume's ownership is applied once, when it is made");
        assert_eq!(stat(&vols["config"].join("k")), (1234, 0o440));
        assert_eq!(stat(&vols["config"]).0, 1234);
        let mut cm = cms.get("cm").await.unwrap();
        cm["data"]["k"] = json!("v2");
        cms.replace("cm", &cm).await.unwrap();
        setup(&server.client, dir.path(), &pod, &fields, &tokens).await.unwrap();
        assert_eq!(std::fs::read_to_string(vols["config"].join("k")).unwrap(), "v2");
        assert_eq!(stat(&vols["config"].join("k")), (1234, 0o440), "the new data is the group's too");
        server.stop().await;
    }

    /// A `kube-api-access-*` volume as the ServiceAccount admission plugin adds it: the bound token (3607 s), the
    /// cluster CA from `kube-root-ca.crt` and the namespace, in one projected directory mounted at
    /// /var/run/secrets/kubernetes.io/serviceaccount; a refreshed token replaces the file atomically.
    #[tokio::test]
    async fn kube_api_access_volumes_hold_token_ca_and_namespace() {
        use crate::fake_apiserver::{FakeApiserver, json as reply};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let issued = std::sync::Arc::new(AtomicUsize::new(0));
        let lifetime = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(3607));
        let (i2, l2) = (issued.clone(), lifetime.clone());
        let fake = FakeApiserver::start(move |seen| match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", "/api/v1/namespaces/team/configmaps/kube-root-ca.crt") => reply(
                200,
                json!({"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "CA PEM"}}),
            ),
            ("POST", "/api/v1/namespaces/team/serviceaccounts/builder/token") => {
                let n = i2.fetch_add(1, Ordering::SeqCst);
                let secs = l2.load(Ordering::SeqCst);
                let exp = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
                let mut answer = seen.body.clone();
                answer["status"] = json!({"token": format!("jwt-{n}"), "expirationTimestamp": exp.to_string()});
                reply(201, answer)
            }
            _ => reply(404, json!({"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"})),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let pod = json!({"metadata": {"name": "p", "namespace": "team", "uid": "u-1"},
            "spec": {"serviceAccountName": "builder",
                "containers": [{"name": "c", "volumeMounts": [{"name": "kube-api-access-x2x9z", "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
                "volumes": [{"name": "kube-api-access-x2x9z", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]}});
        let allocatable = json!({});
        let fields = FieldSource { pod_ip: "", host_ip: "", allocatable: &allocatable };
        let tokens = TokenManager::new(Some(fake.client()));
        let vols = setup(&fake.client(), dir.path(), &pod, &fields, &tokens).await.unwrap();
        let vol = &vols["kube-api-access-x2x9z"];
        let read = |f: &str| std::fs::read_to_string(vol.join(f)).unwrap();
        assert_eq!(
            (read("token"), read("ca.crt"), read("namespace")),
            ("jwt-0".into(), "CA PEM".into(), "team".into())
        );
        for f in ["token", "ca.crt", "namespace"] {
            assert_eq!(mode(&vol.join(f)), 0o644, "{f} has the volume's defaultMode");
        }
        let sent = fake.seen_at("/api/v1/namespaces/team/serviceaccounts/");
        assert_eq!(sent[0].body["spec"]["expirationSeconds"], 3607);
        assert_eq!(sent[0].body["spec"]["audiences"], json!([]));
        assert_eq!(
            sent[0].body["spec"]["boundObjectRef"],
            json!({"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u-1"})
        );
        let m = mounts(&pod["spec"]["containers"][0], &vols, &[]).unwrap();
        assert_eq!(m[0].container_path, "/var/run/secrets/kubernetes.io/serviceaccount");
        assert_eq!(m[0].host_path, vol.display().to_string());
        // The next sync reuses the cached token: nothing is rewritten.
        let data = std::fs::read_link(vol.join("..data")).unwrap();
        setup(&fake.client(), dir.path(), &pod, &fields, &tokens).await.unwrap();
        assert_eq!(std::fs::read_link(vol.join("..data")).unwrap(), data);
        assert_eq!(issued.load(Ordering::SeqCst), 1);
        // A token that needs a refresh: the new one replaces the old through a new data directory.
        tokens.delete_service_account_token("u-1");
        lifetime.store(600, Ordering::SeqCst);
        setup(&fake.client(), dir.path(), &pod, &fields, &tokens).await.unwrap();
        assert_eq!(read("token"), "jwt-1");
        assert_ne!(std::fs::read_link(vol.join("..data")).unwrap(), data, "swapped atomically");
        assert_eq!(read("ca.crt"), "CA PEM");
        // With an fsGroup the token file is 0600 before ownership is applied, then group-readable by the fsGroup
        // (upstream's read-only ownership mask 0440); the others keep their mode, and the directories get setgid.
        let mut grouped = pod.clone();
        grouped["spec"]["securityContext"] = json!({"fsGroup": 2000});
        grouped["metadata"]["uid"] = json!("u-2");
        let vols = setup(&fake.client(), dir.path(), &grouped, &fields, &tokens).await.unwrap();
        let vol = &vols["kube-api-access-x2x9z"];
        let gid = |p: &Path| std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(p).unwrap());
        assert_eq!((gid(&vol.join("token")), mode(&vol.join("token"))), (2000, 0o640));
        assert_eq!((gid(&vol.join("ca.crt")), mode(&vol.join("ca.crt"))), (2000, 0o644));
        assert_eq!((gid(vol), mode(vol) & 0o2000), (2000, 0o2000));
        assert_eq!(mode(&vol.join("..data")) & 0o2000, 0o2000, "the data directory too");
        // TokenRequest failures fail the mount with upstream's message.
        let mut other = pod.clone();
        other["spec"]["serviceAccountName"] = json!("missing");
        other["metadata"]["uid"] = json!("u-3");
        let err = setup(&fake.client(), dir.path(), &other, &fields, &tokens).await.unwrap_err();
        assert_eq!(err.volume, "kube-api-access-x2x9z");
        assert!(err.message.starts_with("failed to fetch token: "), "{}", err.message);
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
        pairs.iter().map(|(k, v)| KeyValue { key: k.to_string(), value: v.to_string() }).collect()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn mounts_with_sub_paths() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("v");
        std::fs::create_dir(&vol).unwrap();
        let vols = BTreeMap::from([("v".to_string(), vol.clone())]);
        let c = json!({"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/data", "subPath": "x", "readOnly": true}]});
        let m = mounts(&c, &vols, &[]).unwrap();
        assert_eq!(m[0].host_path, std::fs::canonicalize(&vol).unwrap().join("x").display().to_string());
        assert!(m[0].readonly);
        assert!(vol.join("x").is_dir(), "the sub path is created in the volume");
        let bad = json!({"name": "c", "volumeMounts": [{"name": "missing", "mountPath": "/d"}]});
        assert!(mounts(&bad, &vols, &[]).is_err());
        let escape = json!({"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/d", "subPath": "../../etc"}]});
        let err = mounts(&escape, &vols, &[]).unwrap_err();
        assert_eq!(err, config_error("unable to provision SubPath `../../etc`: must not contain '..'".into()));
    }

    /// subPathExpr expands from the container's environment; the directory is made in the volume with its mode;
    /// unset or empty variables, absolute paths and backsteps are refused as upstream.
    #[test]
    fn sub_path_exprs_expand_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("v");
        std::fs::create_dir(&vol).unwrap();
        std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).unwrap();
        let vols = BTreeMap::from([("v".to_string(), vol.clone())]);
        let envs = kv(&[("POD_NAME", "web-1"), ("NS", "prod"), ("EMPTY", ""), ("ABS", "/etc"), ("UP", "..")]);
        let expr =
            |e: &str| json!({"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/logs", "subPathExpr": e}]});
        let m = mounts(&expr("$(NS)/$(POD_NAME)"), &vols, &envs).unwrap();
        let made = vol.join("prod/web-1");
        assert_eq!(m[0].host_path, std::fs::canonicalize(&made).unwrap().display().to_string());
        assert!(made.is_dir());
        assert_eq!(mode(&made), 0o777, "created with the volume's mode");
        assert_eq!(mode(&vol.join("prod")), 0o777);
        // $$ escapes; a literal sub path without references is used as is.
        mounts(&expr("cost$$1"), &vols, &envs).unwrap();
        assert!(vol.join("cost$1").is_dir());
        let err = |e: &str| mounts(&expr(e), &vols, &envs).unwrap_err();
        assert_eq!(err("$(NOPE)/$(EMPTY)/$(POD_NAME)"), config_error("missing value for EMPTY, NOPE".into()));
        assert_eq!(err("$(ABS)"), config_error("error SubPath `/etc` must not be an absolute path".into()));
        assert_eq!(
            err("a/$(UP)/b"),
            config_error("unable to provision SubPath `a/../b`: must not contain '..'".into())
        );
        assert_eq!(err("$(UP)").0, "CreateContainerConfigError");
    }

    /// A sub path through a symlink that leaves the volume is refused; one that stays inside is followed.
    #[test]
    fn sub_paths_through_symlinks_must_stay_in_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("v");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(vol.join("inner")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, vol.join("out")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", vol.join("passwd")).unwrap();
        std::os::unix::fs::symlink("inner", vol.join("in")).unwrap();
        let vols = BTreeMap::from([("v".to_string(), vol.clone())]);
        let sub = |p: &str| json!({"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/m", "subPath": p}]});
        let refused = |p: &str| mounts(&sub(p), &vols, &[]).unwrap_err();
        let prepare = config_error("failed to prepare subPath for volumeMount \"v\" of container \"c\"".into());
        assert_eq!(refused("out"), prepare);
        assert_eq!(refused("out/secret"), prepare);
        assert_eq!(refused("passwd"), prepare);
        assert_eq!(
            refused("out/new/dir"),
            config_error("failed to create subPath directory for volumeMount \"v\" of container \"c\"".into())
        );
        assert!(!outside.join("new").exists(), "nothing is created outside the volume");
        let inside = mounts(&sub("in"), &vols, &[]).unwrap();
        assert_eq!(inside[0].host_path, std::fs::canonicalize(vol.join("inner")).unwrap().display().to_string());
        // A configMap-style file through `..data` stays inside: allowed.
        std::fs::create_dir(vol.join("..data")).unwrap();
        std::fs::write(vol.join("..data/key"), "v").unwrap();
        std::os::unix::fs::symlink("..data/key", vol.join("key")).unwrap();
        mounts(&sub("key"), &vols, &[]).unwrap();
    }
}
