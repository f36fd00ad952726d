//! Validation of built-in kinds, after upstream's pkg/apis/*/validation: names, labels, annotations, pods and pod
//! templates, workload selectors against template labels, services, and immutable fields on update. Each problem is
//! a field cause; the registry answers them together as one 422 Invalid.

use api_types::{Cause, Resource};
use serde_json::{Value, json};

pub mod batch;

pub const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
pub const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && is_dns1123_part(s)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` of any length.
fn is_dns1123_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Upstream's IsDNS1123Subdomain: at most 253 characters in all; its dot-separated parts are not limited to 63 (a
/// 65-character pod or ConfigMap name is valid).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_part)
}

pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// `[prefix/]name`: a DNS subdomain prefix and a name of at most 63 alphanumerics, '-', '_', '.'.
pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if prefix.is_some_and(|p| p.is_empty() || !is_dns1123_subdomain(p)) {
        return false;
    }
    is_label_value(name) && !name.is_empty()
}

/// Empty, or at most 63 alphanumerics, '-', '_', '.', starting and ending alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

fn name_rule(res: &Resource) -> fn(&str) -> Option<&'static str> {
    fn label(s: &str) -> Option<&'static str> {
        (!is_dns1123_label(s)).then_some(DNS1123_LABEL_MSG)
    }
    fn subdomain(s: &str) -> Option<&'static str> {
        (!is_dns1123_subdomain(s)).then_some(DNS1123_SUBDOMAIN_MSG)
    }
    fn dns1035(s: &str) -> Option<&'static str> {
        (!is_dns1035_label(s)).then_some(DNS1035_LABEL_MSG)
    }
    fn path_segment(s: &str) -> Option<&'static str> {
        if s == "." || s == ".." {
            return Some("may not be '.' or '..'");
        }
        (s.contains('/') || s.contains('%')).then_some("may not contain '/' or '%'")
    }
    match (res.group, res.plural) {
        ("", "namespaces") => label,
        ("", "services") => dns1035,
        ("", "events") | ("events.k8s.io", "events") => subdomain_or_path,
        // Upstream does not care what certificate requests are called (kubelets name theirs `node-csr-<base64url>`).
        // An APIService is named `<version>.<group>` (`v1.` for the core group): only a path segment.
        ("rbac.authorization.k8s.io", _)
        | ("certificates.k8s.io", "certificatesigningrequests")
        | ("apiregistration.k8s.io", "apiservices") => path_segment,
        _ => subdomain,
    }
}

fn subdomain_or_path(s: &str) -> Option<&'static str> {
    (s.contains('/') || s.contains('%') || s == "." || s == "..").then_some("may not contain '/' or '%'")
}

fn metadata(res: &Resource, obj: &Value, causes: &mut Vec<Cause>) {
    let meta = obj.get("metadata").cloned().unwrap_or(Value::Null);
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required("metadata.name"));
    } else if let Some(msg) = name_rule(res)(name) {
        causes.push(Cause::invalid("metadata.name", &json!(name), msg));
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if !is_qualified_name(k) {
                causes.push(Cause::invalid("metadata.labels", &json!(k), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
            match v.as_str() {
                Some(s) if is_label_value(s) => {}
                _ => causes.push(Cause::invalid("metadata.labels", v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")),
            }
        }
    } else if meta.get("labels").is_some_and(|l| !l.is_null()) {
        causes.push(Cause::invalid("metadata.labels", &meta["labels"], "must be a map of strings"));
    }
    if let Some(ann) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in ann {
            if !is_qualified_name(k) {
                causes.push(Cause::invalid("metadata.annotations", &json!(k), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
            if !v.is_string() {
                causes.push(Cause::invalid(format!("metadata.annotations.{k}"), v, "must be a string"));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                field: "metadata.annotations".into(),
                message: "Too long: must have at most 262144 bytes".into(),
            });
        }
    }
}

fn pod_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => causes.push(Cause::required(format!("{path}.containers"))),
        Some(cs) if cs.is_empty() => causes.push(Cause::required(format!("{path}.containers"))),
        Some(_) => {}
    }
    let mut names = Vec::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() {
                causes.push(Cause::required(format!("{at}.name")));
            } else if !is_dns1123_label(name) {
                causes.push(Cause::invalid(format!("{at}.name"), &json!(name), DNS1123_LABEL_MSG));
            } else if names.contains(&name) {
                causes.push(Cause::duplicate(format!("{at}.name"), &json!(name)));
            }
            names.push(name);
            if c.get("image").and_then(Value::as_str).is_none_or(|s| s.trim().is_empty()) {
                causes.push(Cause::required(format!("{at}.image")));
            }
            for (j, p) in c.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    causes.push(Cause::invalid(
                        format!("{at}.ports[{j}].containerPort"),
                        &json!(port),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
                if let Some(proto) = p.get("protocol").and_then(Value::as_str)
                    && !matches!(proto, "TCP" | "UDP" | "SCTP")
                {
                    causes.push(Cause::not_supported(
                        format!("{at}.ports[{j}].protocol"),
                        &json!(proto),
                        &["SCTP", "TCP", "UDP"],
                    ));
                }
            }
        }
    }
    sysctls(spec, &format!("{path}.securityContext.sysctls"), causes);
    if let Some(rp) = spec.get("restartPolicy").and_then(Value::as_str)
        && !matches!(rp, "Always" | "OnFailure" | "Never")
    {
        causes.push(Cause::not_supported(
            format!("{path}.restartPolicy"),
            &json!(rp),
            &["Always", "Never", "OnFailure"],
        ));
    }
}

/// A sysctl segment: `[a-z0-9]([-_a-z0-9]*[a-z0-9])?`.
fn is_sysctl_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Upstream's IsValidSysctlName: at most 253 characters, segments separated by `.` or `/`.
pub fn is_valid_sysctl_name(name: &str) -> bool {
    name.len() <= 253 && name.split(['.', '/']).all(is_sysctl_segment)
}

/// The kernel namespace of a sysctl (component-helpers' sysctl.GetNamespace), in either spelling.
fn sysctl_namespace(name: &str) -> Option<&'static str> {
    let name = name.replace('/', ".");
    if name == "kernel.sem" {
        return Some("ipc");
    }
    [("kernel.shm", "ipc"), ("kernel.msg", "ipc"), ("fs.mqueue.", "ipc"), ("net.", "net")]
        .into_iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, ns)| ns)
}

/// Upstream's validateSysctls: names required, valid and not repeated; a net sysctl not with `hostNetwork`, an
/// IPC one not with `hostIPC`.
fn sysctls(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let flag = |f: &str| spec.get(f).and_then(Value::as_bool).unwrap_or(false);
    let mut seen = Vec::new();
    for (i, s) in spec.pointer("/securityContext/sysctls").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let at = format!("{path}[{i}].name");
        let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(&at));
        } else if !is_valid_sysctl_name(name) {
            causes.push(Cause::invalid(
                &at,
                &json!(name),
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if seen.contains(&name) {
            causes.push(Cause::duplicate(&at, &json!(name)));
        }
        match sysctl_namespace(name) {
            Some("net") if flag("hostNetwork") => {
                causes.push(Cause::invalid(&at, &json!(name), "may not be specified when 'hostNetwork' is true"))
            }
            Some("ipc") if flag("hostIPC") => {
                causes.push(Cause::invalid(&at, &json!(name), "may not be specified when 'hostIPC' is true"))
            }
            _ => {}
        }
        seen.push(name);
    }
}

/// The pod fields upstream lets an update change.
fn pod_spec_mutable_masked(spec: &Value) -> Value {
    let mut s = spec.clone();
    for list in ["initContainers", "containers"] {
        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                c.remove("image");
            }
        }
    }
    if let Some(o) = s.as_object_mut() {
        // ephemeralContainers change only through their own subresource (checked by `ephemeral_containers`).
        for k in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "schedulingGates",
            "ephemeralContainers",
        ] {
            o.remove(k);
        }
    }
    s
}

/// Upstream's ephemeral container rules (`validateEphemeralContainers` and the update's): existing ones may not
/// change or go away, names are unique among all the pod's containers, an image is required, the fields an
/// ephemeral container may not have are refused, and `targetContainerName` names a container of the pod.
fn ephemeral_containers(spec: &Value, old_spec: &Value, causes: &mut Vec<Cause>) {
    let list = |s: &Value| s.get("ephemeralContainers").and_then(Value::as_array).cloned().unwrap_or_default();
    let (new, old) = (list(spec), list(old_spec));
    for (i, o) in old.iter().enumerate() {
        let name = o["name"].as_str().unwrap_or_default();
        match new.iter().find(|c| c["name"] == name) {
            None => causes.push(Cause::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers \"{name}\" may not be removed"),
            )),
            Some(c) if c != o => causes.push(Cause::forbidden(
                format!("spec.ephemeralContainers[{i}]"),
                "existing ephemeral containers may not be changed",
            )),
            _ => {}
        }
    }
    let mut names: std::collections::BTreeSet<String> = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let regular = names.clone();
    for (i, c) in new.iter().enumerate() {
        let at = format!("spec.ephemeralContainers[{i}]");
        let name = c["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(format!("{at}.name")));
        } else if !names.insert(name.to_string()) {
            causes.push(Cause::duplicate(format!("{at}.name"), &json!(name)));
        }
        if c["image"].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("{at}.image")));
        }
        for field in
            ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe", "ports", "resources", "restartPolicy"]
        {
            let set = c.get(field).is_some_and(|v| !v.is_null() && v != &json!({}) && v != &json!([]));
            if set {
                causes.push(Cause::forbidden(format!("{at}.{field}"), "cannot be set for an Ephemeral Container"));
            }
        }
        if let Some(t) = c["targetContainerName"].as_str().filter(|t| !t.is_empty())
            && !regular.contains(t)
        {
            causes.push(Cause::not_found(format!("{at}.targetContainerName"), &json!(t)));
        }
    }
}

fn selector_matches_template(obj: &Value, causes: &mut Vec<Cause>) {
    let selector = obj.pointer("/spec/selector");
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        causes.push(Cause::required("spec.selector"));
        return;
    };
    let labels = obj.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}));
    let match_labels = selector.get("matchLabels").and_then(Value::as_object);
    let exprs = selector.get("matchExpressions").and_then(Value::as_array);
    if match_labels.is_none_or(|m| m.is_empty()) && exprs.is_none_or(|e| e.is_empty()) {
        causes.push(Cause::invalid("spec.selector", selector, "empty selector is invalid for deployment"));
        return;
    }
    let ok = match api_types::selector::LabelSelector::from_json(selector) {
        Ok(sel) => sel.matches_value(Some(&labels)),
        Err(e) => {
            causes.push(Cause::invalid("spec.selector", selector, e.to_string()));
            return;
        }
    };
    if !ok {
        causes.push(Cause::invalid(
            "spec.template.metadata.labels",
            &labels,
            "`selector` does not match template `labels`",
        ));
    }
}

pub fn validate(res: &Resource, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata(res, obj, &mut causes);
    match (res.group, res.kind) {
        ("", "Pod") => {
            pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec", &mut causes);
            if let Some(old) = old {
                let (a, b) = (obj.get("spec").unwrap_or(&Value::Null), old.get("spec").unwrap_or(&Value::Null));
                ephemeral_containers(a, b, &mut causes);
                if pod_spec_mutable_masked(a) != pod_spec_mutable_masked(b) {
                    causes.push(Cause::forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
                }
            }
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("", "ReplicationController") => {
            if res.kind == "ReplicationController" {
                // v1 RCs use a plain map selector, defaulted from the template labels.
            } else {
                selector_matches_template(obj, &mut causes);
            }
            pod_spec(obj.pointer("/spec/template/spec").unwrap_or(&Value::Null), "spec.template.spec", &mut causes);
            if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
                && r < 0
            {
                causes.push(Cause::invalid("spec.replicas", &json!(r), "must be greater than or equal to 0"));
            }
            if let Some(old) = old
                && res.group == "apps"
                && old.pointer("/spec/selector") != obj.pointer("/spec/selector")
            {
                causes.push(Cause::invalid(
                    "spec.selector",
                    obj.pointer("/spec/selector").unwrap_or(&Value::Null),
                    "field is immutable",
                ));
            }
        }
        ("batch", "Job") => {
            pod_spec(obj.pointer("/spec/template/spec").unwrap_or(&Value::Null), "spec.template.spec", &mut causes);
            if let Some(rp) = obj.pointer("/spec/template/spec/restartPolicy").and_then(Value::as_str)
                && rp == "Always"
            {
                causes.push(Cause::not_supported(
                    "spec.template.spec.restartPolicy",
                    &json!(rp),
                    &["OnFailure", "Never"],
                ));
            }
            let spec = obj.get("spec").unwrap_or(&Value::Null);
            batch::job_spec(spec, "spec", &mut causes);
            if let Some(old) = old {
                batch::job_spec_update(spec, old.get("spec").unwrap_or(&Value::Null), "spec", &mut causes);
            }
        }
        ("batch", "CronJob") => {
            if obj.pointer("/spec/schedule").and_then(Value::as_str).is_none_or(str::is_empty) {
                causes.push(Cause::required("spec.schedule"));
            }
            pod_spec(
                obj.pointer("/spec/jobTemplate/spec/template/spec").unwrap_or(&Value::Null),
                "spec.jobTemplate.spec.template.spec",
                &mut causes,
            );
            if let Some(spec) = obj.pointer("/spec/jobTemplate/spec") {
                batch::job_spec(spec, "spec.jobTemplate.spec", &mut causes);
            }
        }
        ("", "Service") => crate::service::validation::validate(obj, old, &mut causes),
        ("apiregistration.k8s.io", "APIService") => causes.extend(crate::aggregator::validate(obj)),
        ("flowcontrol.apiserver.k8s.io", kind) => causes.extend(crate::flowcontrol::validate(kind, obj)),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            causes.extend(crate::admission::policy::validation::policy(obj, old));
            causes.extend(crate::admission::policy::validation::status(obj));
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            causes.extend(crate::admission::policy::validation::binding(obj));
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration") => {
            causes.extend(crate::admission::policy::validation::webhook_configuration(obj, old));
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            causes.extend(crate::apiextensions::crd::validate(obj, old));
        }
        ("", "ConfigMap") | ("", "Secret") => {
            for field in ["data", "binaryData", "stringData"] {
                for k in obj.get(field).and_then(Value::as_object).into_iter().flat_map(|m| m.keys()) {
                    let ok = !k.is_empty()
                        && k.len() <= 253
                        && k.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
                    if !ok {
                        causes.push(Cause::invalid(format!("{field}[{k}]"), &json!(k), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
                    }
                }
            }
            if let Some(old) = old {
                immutable_data(obj, old, &mut causes);
                if res.kind == "Secret" && obj.get("type") != old.get("type") {
                    causes.push(Cause::invalid("type", obj.get("type").unwrap_or(&Value::Null), "field is immutable"));
                }
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            if let Some(old) = old {
                // Upstream's ValidatePriorityClassUpdate.
                if obj.get("value") != old.get("value") {
                    causes.push(Cause::forbidden("value", "may not be changed in an update."));
                }
                let policy = |o: &Value| o.get("preemptionPolicy").cloned().unwrap_or(json!("PreemptLowerPriority"));
                if policy(obj) != policy(old) {
                    causes.push(Cause::invalid("preemptionPolicy", &policy(obj), "field is immutable"));
                }
            }
        }
        _ => {}
    }
    causes
}

/// Upstream's ConfigMap and Secret update rule: once `immutable: true`, neither the data nor the flag may change.
fn immutable_data(obj: &Value, old: &Value, causes: &mut Vec<Cause>) {
    if old.get("immutable") != Some(&json!(true)) {
        return;
    }
    const WHY: &str = "field is immutable when `immutable` is set";
    if obj.get("immutable") != Some(&json!(true)) {
        causes.push(Cause::forbidden("immutable", WHY));
    }
    let empty = json!({});
    for field in ["data", "binaryData"] {
        let (a, b) = (obj.get(field).filter(|v| !v.is_null()), old.get(field).filter(|v| !v.is_null()));
        if a.unwrap_or(&empty) != b.unwrap_or(&empty) {
            causes.push(Cause::forbidden(field, WHY));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's e2e "should reject invalid sysctls": the invalid names are named, the valid ones are not
    /// (unsafe or not, that is the kubelet's business); host namespaces refuse their sysctls.
    #[test]
    fn pod_sysctls_as_upstream() {
        let pods = api_types::resources::find("", "v1", "pods").unwrap();
        let pod = |spec: Value| json!({"metadata": {"name": "p"}, "spec": spec});
        let text =
            |c: Vec<Cause>| c.iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>().join("\n");
        let c = json!([{"name": "c", "image": "busybox"}]);
        let invalid = pod(json!({"containers": c, "securityContext": {"sysctls": [
            {"name": "foo-", "value": "bar"}, {"name": "kernel.shmmax", "value": "100000000"},
            {"name": "safe-and-unsafe", "value": "100000000"}, {"name": "bar..", "value": "42"}]}}));
        let out = text(validate(pods, &invalid, None));
        assert!(out.contains("Invalid value: \"foo-\""), "{out}");
        assert!(out.contains("Invalid value: \"bar..\""), "{out}");
        assert!(!out.contains("safe-and-unsafe") && !out.contains("kernel.shmmax"), "{out}");
        assert!(out.contains("spec.securityContext.sysctls[0].name"), "{out}");
        let valid = pod(json!({"containers": c, "securityContext": {"sysctls": [
            {"name": "kernel.shm_rmid_forced", "value": "1"}, {"name": "net/ipv4/conf/eth0.100/rp_filter", "value": "1"}]}}));
        assert_eq!(text(validate(pods, &valid, None)), "");
        let twice = pod(json!({"containers": c, "securityContext": {"sysctls": [
            {"name": "kernel.msgmax", "value": "1"}, {"name": "kernel.msgmax", "value": "2"}]}}));
        assert!(text(validate(pods, &twice, None)).contains("sysctls[1].name: Duplicate value"));
        let host = pod(json!({"containers": c, "hostNetwork": true, "securityContext": {"sysctls": [
            {"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}]}}));
        assert!(text(validate(pods, &host, None)).contains("may not be specified when 'hostNetwork' is true"));
    }

    #[test]
    fn immutable_configmaps_secrets_and_priority_values() {
        // Upstream's ConfigMap/Secret "should be immutable if `immutable` field is set" and PriorityClass updates.
        let text = |c: Vec<Cause>| c.iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>();
        let cm = api_types::resources::find("", "v1", "configmaps").unwrap();
        let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        assert!(validate(cm, &old, Some(&old)).is_empty());
        let changed = json!({"metadata": {"name": "c"}, "immutable": false, "data": {"a": "2"}});
        assert_eq!(
            text(validate(cm, &changed, Some(&old))),
            [
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set"
            ]
        );
        let mutable = json!({"metadata": {"name": "c"}, "data": {"a": "1"}});
        assert!(validate(cm, &json!({"metadata": {"name": "c"}, "data": {"a": "2"}}), Some(&mutable)).is_empty());
        let secret = api_types::resources::find("", "v1", "secrets").unwrap();
        let old = json!({"metadata": {"name": "s"}, "type": "Opaque", "immutable": true, "data": {"a": "eA=="}});
        let new = json!({"metadata": {"name": "s"}, "type": "Opaque", "immutable": true, "data": {"a": "eQ=="}});
        assert_eq!(
            text(validate(secret, &new, Some(&old))),
            ["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let pc = api_types::resources::find("scheduling.k8s.io", "v1", "priorityclasses").unwrap();
        let old = json!({"metadata": {"name": "p"}, "value": 10});
        let new = json!({"metadata": {"name": "p"}, "value": 11});
        assert_eq!(text(validate(pc, &new, Some(&old))), ["value: Forbidden: may not be changed in an update."]);
    }

    #[test]
    fn name_rules() {
        assert!(is_dns1123_label("web-1"));
        assert!(!is_dns1123_label("Web"));
        assert!(!is_dns1123_label("-a"));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(is_dns1123_subdomain(&"a".repeat(65)), "parts of a subdomain are not labels of 63");
        assert!(is_dns1123_subdomain(&format!("{}.b", "a".repeat(251))));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(!is_dns1035_label("1abc"));
        assert!(is_qualified_name("app.kubernetes.io/name"));
        assert!(!is_qualified_name("/name"));
        assert!(is_label_value(""));
        assert!(!is_label_value("-x"));
        let csr = api_types::resources::find("certificates.k8s.io", "v1", "certificatesigningrequests").unwrap();
        assert_eq!(name_rule(csr)("node-csr-PqdMVgq2HfG2hc1tIaRS2sX2LEDFzAzUZPmspOU8VUg"), None);
        assert!(name_rule(csr)("a/b").is_some());
    }

    #[test]
    fn pods_need_named_containers_with_images() {
        let res = api_types::resources::find("", "v1", "pods").unwrap();
        let pod =
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "a", "image": "x"}]}});
        let fields: Vec<_> = validate(res, &pod, None).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["spec.containers[0].image", "spec.containers[1].name"]);
        let bad_name = json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "a", "image": "x"}]}});
        assert_eq!(validate(res, &bad_name, None)[0].field, "metadata.name");
    }

    #[test]
    fn deployment_selector_must_match_template_and_stay() {
        let res = api_types::resources::find("apps", "v1", "deployments").unwrap();
        let d = |sel: &str, lbl: &str| json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": sel}}, "template": {"metadata": {"labels": {"app": lbl}}, "spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        assert!(validate(res, &d("web", "web"), None).is_empty());
        let causes = validate(res, &d("web", "other"), None);
        assert_eq!(
            causes[0].message,
            "Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`"
        );
        let causes = validate(res, &d("x", "x"), Some(&d("web", "web")));
        assert_eq!(causes[0].field, "spec.selector");
    }
}
