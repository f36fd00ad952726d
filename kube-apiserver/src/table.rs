//! `meta.k8s.io/v1` Tables for `kubectl get`: upstream's columns (pkg/printers/internalversion) for the common
//! kinds, `-o wide` columns as priority 1, and NAME / CREATED AT for the rest, as upstream's default table.

use api_types::Resource;
use serde_json::{Value, json};

struct Col {
    name: &'static str,
    ty: &'static str,
    priority: u8,
}

const fn c(name: &'static str, ty: &'static str) -> Col {
    Col { name, ty, priority: 0 }
}
const fn w(name: &'static str, ty: &'static str) -> Col {
    Col { name, ty, priority: 1 }
}

/// upstream's duration.HumanDuration, as kubectl prints ages.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 { format!("{}d", h / 24) } else { format!("{}d{}h", h / 24, h % 24) }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        let days = h / 24 - 365 * (h / 24 / 365);
        if days == 0 { format!("{}y", h / 24 / 365) } else { format!("{}y{}d", h / 24 / 365, days) }
    } else {
        format!("{}y", h / 24 / 365)
    }
}

fn since(ts: Option<&Value>) -> String {
    let Some(ts) = ts.and_then(Value::as_str) else {
        return "<unknown>".into();
    };
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

fn age(obj: &Value) -> String {
    since(obj.pointer("/metadata/creationTimestamp"))
}

fn s(obj: &Value, p: &str) -> String {
    match obj.pointer(p) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn i(obj: &Value, p: &str) -> i64 {
    obj.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn len(obj: &Value, p: &str) -> usize {
    match obj.pointer(p) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// `app=web,tier=x` from a map selector or a LabelSelector.
fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let map = sel.get("matchLabels").or(if sel.get("matchExpressions").is_none() { Some(sel) } else { None });
    let mut parts: Vec<String> = map
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    for e in sel.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = s(e, "/key");
        let vals: Vec<String> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        parts.push(match e.get("operator").and_then(Value::as_str) {
            Some("In") => format!("{key} in ({})", vals.join(",")),
            Some("NotIn") => format!("{key} notin ({})", vals.join(",")),
            Some("Exists") => key,
            Some("DoesNotExist") => format!("!{key}"),
            _ => key,
        });
    }
    if parts.is_empty() { "<none>".into() } else { parts.join(",") }
}

fn containers_images(obj: &Value, p: &str) -> (String, String) {
    let cs = obj.pointer(p).and_then(Value::as_array).cloned().unwrap_or_default();
    let names: Vec<String> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<String> = cs.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

fn pod_status(pod: &Value) -> (String, usize, usize, i64) {
    let mut reason = s(pod, "/status/phase");
    if let Some(r) = pod.pointer("/status/reason").and_then(Value::as_str) {
        reason = r.to_string();
    }
    let total = len(pod, "/spec/containers");
    let mut ready = 0;
    let mut restarts = 0;
    let inits = pod.pointer("/status/initContainerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
    let init_total = len(pod, "/spec/initContainers");
    let mut initializing = false;
    for (idx, c) in inits.iter().enumerate() {
        restarts += i(c, "/restartCount");
        if i(c, "/state/terminated/exitCode") == 0 && c.pointer("/state/terminated").is_some() {
            continue;
        }
        initializing = true;
        reason = if let Some(r) = c.pointer("/state/terminated/reason").and_then(Value::as_str) {
            format!("Init:{r}")
        } else if let Some(r) =
            c.pointer("/state/waiting/reason").and_then(Value::as_str).filter(|r| *r != "PodInitializing")
        {
            format!("Init:{r}")
        } else {
            format!("Init:{idx}/{init_total}")
        };
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in pod.pointer("/status/containerStatuses").and_then(Value::as_array).into_iter().flatten().rev() {
            restarts += i(c, "/restartCount");
            if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str).filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if let Some(t) = c.pointer("/state/terminated") {
                reason = match t.get("reason").and_then(Value::as_str) {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ if t.get("signal").and_then(Value::as_i64).unwrap_or(0) != 0 => {
                        format!("Signal:{}", i(t, "/signal"))
                    }
                    _ => format!("ExitCode:{}", i(t, "/exitCode")),
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true) && c.pointer("/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if pod.pointer("/status/reason").and_then(Value::as_str) == Some("NodeLost") {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    (reason, ready, total, restarts)
}

fn node_status(node: &Value) -> String {
    let mut parts = Vec::new();
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| s(c, "/status"));
    parts.push(match ready.as_deref() {
        Some("True") => "Ready",
        _ => "NotReady",
    });
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        parts.push("SchedulingDisabled");
    }
    parts.join(",")
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(String::from)
                        .or_else(|| (k == "kubernetes.io/role").then(|| v.as_str().unwrap_or_default().to_string()))
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    if roles.is_empty() { "<none>".into() } else { roles.join(",") }
}

fn address(node: &Value, ty: &str) -> String {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| x["type"] == ty))
        .map(|x| s(x, "/address"))
        .unwrap_or_else(|| "<none>".into())
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let node = p.get("nodePort").and_then(Value::as_i64).map(|n| format!(":{n}")).unwrap_or_default();
            format!("{}{node}/{}", i(p, "/port"), s(p, "/protocol"))
        })
        .collect();
    if ports.is_empty() { "<none>".into() } else { ports.join(",") }
}

fn external_ip(svc: &Value) -> String {
    let ty = s(svc, "/spec/type");
    let mut ips: Vec<String> = svc
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    match ty.as_str() {
        "ExternalName" => s(svc, "/spec/externalName"),
        "LoadBalancer" => {
            for ing in svc.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).into_iter().flatten() {
                ips.push(if ing.get("ip").is_some() { s(ing, "/ip") } else { s(ing, "/hostname") });
            }
            if ips.is_empty() { "<pending>".into() } else { ips.join(",") }
        }
        _ => {
            if ips.is_empty() {
                "<none>".into()
            } else {
                ips.join(",")
            }
        }
    }
}

fn endpoints_summary(ep: &Value) -> String {
    let mut out = Vec::new();
    for subset in ep.get("subsets").and_then(Value::as_array).into_iter().flatten() {
        let ports: Vec<i64> =
            subset.get("ports").and_then(Value::as_array).into_iter().flatten().map(|p| i(p, "/port")).collect();
        for a in subset.get("addresses").and_then(Value::as_array).into_iter().flatten() {
            if ports.is_empty() {
                out.push(s(a, "/ip"));
            }
            for p in &ports {
                out.push(format!("{}:{p}", s(a, "/ip")));
            }
        }
    }
    let total = out.len();
    if total == 0 {
        return "<none>".into();
    }
    if total > 3 { format!("{} + {} more...", out[..3].join(","), total - 3) } else { out.join(",") }
}

fn columns(res: &Resource) -> Vec<Col> {
    if res.custom {
        // A CRD without additionalPrinterColumns: upstream defaults one Age column.
        return vec![c("Name", "string"), c("Age", "date")];
    }
    match (res.group, res.plural) {
        ("", "pods") => vec![
            c("Name", "string"),
            c("Ready", "string"),
            c("Status", "string"),
            c("Restarts", "string"),
            c("Age", "string"),
            w("IP", "string"),
            w("Node", "string"),
            w("Nominated Node", "string"),
            w("Readiness Gates", "string"),
        ],
        ("apps", "deployments") => vec![
            c("Name", "string"),
            c("Ready", "string"),
            c("Up-to-date", "integer"),
            c("Available", "integer"),
            c("Age", "string"),
            w("Containers", "string"),
            w("Images", "string"),
            w("Selector", "string"),
        ],
        ("apps", "replicasets") | ("", "replicationcontrollers") => vec![
            c("Name", "string"),
            c("Desired", "integer"),
            c("Current", "integer"),
            c("Ready", "integer"),
            c("Age", "string"),
            w("Containers", "string"),
            w("Images", "string"),
            w("Selector", "string"),
        ],
        ("apps", "statefulsets") => vec![
            c("Name", "string"),
            c("Ready", "string"),
            c("Age", "string"),
            w("Containers", "string"),
            w("Images", "string"),
        ],
        ("apps", "daemonsets") => vec![
            c("Name", "string"),
            c("Desired", "integer"),
            c("Current", "integer"),
            c("Ready", "integer"),
            c("Up-to-date", "integer"),
            c("Available", "integer"),
            c("Node Selector", "string"),
            c("Age", "string"),
            w("Containers", "string"),
            w("Images", "string"),
            w("Selector", "string"),
        ],
        ("batch", "jobs") => vec![
            c("Name", "string"),
            c("Status", "string"),
            c("Completions", "string"),
            c("Duration", "string"),
            c("Age", "string"),
            w("Containers", "string"),
            w("Images", "string"),
            w("Selector", "string"),
        ],
        ("batch", "cronjobs") => vec![
            c("Name", "string"),
            c("Schedule", "string"),
            c("Timezone", "string"),
            c("Suspend", "boolean"),
            c("Active", "integer"),
            c("Last Schedule", "string"),
            c("Age", "string"),
            w("Containers", "string"),
            w("Images", "string"),
            w("Selector", "string"),
        ],
        ("", "services") => vec![
            c("Name", "string"),
            c("Type", "string"),
            c("Cluster-IP", "string"),
            c("External-IP", "string"),
            c("Port(s)", "string"),
            c("Age", "string"),
            w("Selector", "string"),
        ],
        ("", "endpoints") => vec![c("Name", "string"), c("Endpoints", "string"), c("Age", "string")],
        ("discovery.k8s.io", "endpointslices") => vec![
            c("Name", "string"),
            c("AddressType", "string"),
            c("Ports", "string"),
            c("Endpoints", "string"),
            c("Age", "string"),
        ],
        ("", "nodes") => vec![
            c("Name", "string"),
            c("Status", "string"),
            c("Roles", "string"),
            c("Age", "string"),
            c("Version", "string"),
            w("Internal-IP", "string"),
            w("External-IP", "string"),
            w("OS-Image", "string"),
            w("Kernel-Version", "string"),
            w("Container-Runtime", "string"),
        ],
        ("", "namespaces") => vec![c("Name", "string"), c("Status", "string"), c("Age", "string")],
        ("", "configmaps") => vec![c("Name", "string"), c("Data", "integer"), c("Age", "string")],
        ("", "secrets") => vec![c("Name", "string"), c("Type", "string"), c("Data", "integer"), c("Age", "string")],
        ("", "serviceaccounts") => vec![c("Name", "string"), c("Secrets", "integer"), c("Age", "string")],
        ("", "events") => vec![
            c("Last Seen", "string"),
            c("Type", "string"),
            c("Reason", "string"),
            c("Object", "string"),
            w("Subobject", "string"),
            w("Source", "string"),
            c("Message", "string"),
            w("First Seen", "string"),
            w("Count", "string"),
            w("Name", "string"),
        ],
        ("coordination.k8s.io", "leases") => vec![c("Name", "string"), c("Holder", "string"), c("Age", "string")],
        ("flowcontrol.apiserver.k8s.io", "flowschemas") => vec![
            c("Name", "string"),
            c("PriorityLevel", "string"),
            c("MatchingPrecedence", "string"),
            c("DistinguisherMethod", "string"),
            c("Age", "string"),
            c("MissingPL", "string"),
        ],
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations") => vec![
            c("Name", "string"),
            c("Type", "string"),
            c("NominalConcurrencyShares", "string"),
            c("Queues", "string"),
            c("HandSize", "string"),
            c("QueueLengthLimit", "string"),
            c("Age", "string"),
        ],
        ("", "persistentvolumes") => vec![
            c("Name", "string"),
            c("Capacity", "string"),
            c("Access Modes", "string"),
            c("Reclaim Policy", "string"),
            c("Status", "string"),
            c("Claim", "string"),
            c("StorageClass", "string"),
            c("VolumeAttributesClass", "string"),
            c("Reason", "string"),
            c("Age", "string"),
            w("VolumeMode", "string"),
        ],
        ("", "persistentvolumeclaims") => vec![
            c("Name", "string"),
            c("Status", "string"),
            c("Volume", "string"),
            c("Capacity", "string"),
            c("Access Modes", "string"),
            c("StorageClass", "string"),
            c("VolumeAttributesClass", "string"),
            c("Age", "string"),
            w("VolumeMode", "string"),
        ],
        ("networking.k8s.io", "ingresses") => vec![
            c("Name", "string"),
            c("Class", "string"),
            c("Hosts", "string"),
            c("Address", "string"),
            c("Ports", "string"),
            c("Age", "string"),
        ],
        ("apiregistration.k8s.io", "apiservices") => {
            vec![c("Name", "string"), c("Service", "string"), c("Available", "string"), c("Age", "string")]
        }
        _ => vec![c("Name", "string"), c("Created At", "date")],
    }
}

fn access_modes(v: Option<&Value>) -> String {
    let modes: Vec<&str> = v
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    modes.join(",")
}

fn cells(res: &Resource, o: &Value) -> Vec<Value> {
    let name = s(o, "/metadata/name");
    if res.custom {
        return vec![json!(name), json!(age(o))];
    }
    match (res.group, res.plural) {
        ("", "pods") => {
            let (status, ready, total, restarts) = pod_status(o);
            let gates = o.pointer("/spec/readinessGates").and_then(Value::as_array).map(|g| g.len()).unwrap_or(0);
            vec![
                json!(name),
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                json!(age(o)),
                json!(or_none(s(o, "/status/podIP"))),
                json!(or_none(s(o, "/spec/nodeName"))),
                json!(or_none(s(o, "/status/nominatedNodeName"))),
                json!(if gates == 0 { "<none>".to_string() } else { format!("0/{gates}") }),
            ]
        }
        ("apps", "deployments") => {
            let (cs, is) = containers_images(o, "/spec/template/spec/containers");
            vec![
                json!(name),
                json!(format!("{}/{}", i(o, "/status/readyReplicas"), i(o, "/spec/replicas"))),
                json!(i(o, "/status/updatedReplicas")),
                json!(i(o, "/status/availableReplicas")),
                json!(age(o)),
                json!(cs),
                json!(is),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "replicasets") | ("", "replicationcontrollers") => {
            let (cs, is) = containers_images(o, "/spec/template/spec/containers");
            vec![
                json!(name),
                json!(i(o, "/spec/replicas")),
                json!(i(o, "/status/replicas")),
                json!(i(o, "/status/readyReplicas")),
                json!(age(o)),
                json!(cs),
                json!(is),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "statefulsets") => {
            let (cs, is) = containers_images(o, "/spec/template/spec/containers");
            vec![
                json!(name),
                json!(format!("{}/{}", i(o, "/status/readyReplicas"), i(o, "/spec/replicas"))),
                json!(age(o)),
                json!(cs),
                json!(is),
            ]
        }
        ("apps", "daemonsets") => {
            let (cs, is) = containers_images(o, "/spec/template/spec/containers");
            let ns = o
                .pointer("/spec/template/spec/nodeSelector")
                .map(|m| selector_string(Some(m)))
                .unwrap_or_else(|| "<none>".into());
            vec![
                json!(name),
                json!(i(o, "/status/desiredNumberScheduled")),
                json!(i(o, "/status/currentNumberScheduled")),
                json!(i(o, "/status/numberReady")),
                json!(i(o, "/status/updatedNumberScheduled")),
                json!(i(o, "/status/numberAvailable")),
                json!(ns),
                json!(age(o)),
                json!(cs),
                json!(is),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("batch", "jobs") => {
            let (cs, is) = containers_images(o, "/spec/template/spec/containers");
            let conds = o.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            let has = |t: &str| conds.iter().any(|c| c["type"] == t && c["status"] == "True");
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if has("FailureTarget") || has("SuccessCriteriaMet") {
                "Terminating"
            } else if has("Suspended") {
                "Suspended"
            } else {
                "Running"
            };
            let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(n) => format!("{}/{n}", i(o, "/status/succeeded")),
                None => format!("{}/1 of {}", i(o, "/status/succeeded"), i(o, "/spec/parallelism").max(1)),
            };
            let duration = match (
                o.pointer("/status/startTime").and_then(Value::as_str),
                o.pointer("/status/completionTime").and_then(Value::as_str),
            ) {
                (Some(a), Some(b)) => match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
                    (Ok(a), Ok(b)) => human_duration(b.as_second() - a.as_second()),
                    _ => String::new(),
                },
                (Some(_), None) => since(o.pointer("/status/startTime")),
                _ => String::new(),
            };
            vec![
                json!(name),
                json!(status),
                json!(completions),
                json!(duration),
                json!(age(o)),
                json!(cs),
                json!(is),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("batch", "cronjobs") => {
            let (cs, is) = containers_images(o, "/spec/jobTemplate/spec/template/spec/containers");
            let last = if o.pointer("/status/lastScheduleTime").is_some() {
                since(o.pointer("/status/lastScheduleTime"))
            } else {
                "<none>".into()
            };
            vec![
                json!(name),
                json!(s(o, "/spec/schedule")),
                json!(or_none(s(o, "/spec/timeZone"))),
                json!(o.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false)),
                json!(len(o, "/status/active")),
                json!(last),
                json!(age(o)),
                json!(cs),
                json!(is),
                json!(selector_string(o.pointer("/spec/jobTemplate/spec/selector"))),
            ]
        }
        ("", "services") => vec![
            json!(name),
            json!(s(o, "/spec/type")),
            json!(or_none(s(o, "/spec/clusterIP"))),
            json!(external_ip(o)),
            json!(service_ports(o)),
            json!(age(o)),
            json!(selector_string(o.pointer("/spec/selector"))),
        ],
        ("", "endpoints") => vec![json!(name), json!(endpoints_summary(o)), json!(age(o))],
        ("discovery.k8s.io", "endpointslices") => {
            let ports: Vec<String> = o
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| i(p, "/port").to_string())
                .collect();
            let addrs: Vec<String> = o
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|e| e.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            let shown = if addrs.len() > 3 {
                format!("{} + {} more...", addrs[..3].join(","), addrs.len() - 3)
            } else {
                or_none(addrs.join(","))
            };
            vec![
                json!(name),
                json!(s(o, "/addressType")),
                json!(if ports.is_empty() { "<unset>".to_string() } else { ports.join(",") }),
                json!(shown),
                json!(age(o)),
            ]
        }
        ("", "nodes") => vec![
            json!(name),
            json!(node_status(o)),
            json!(node_roles(o)),
            json!(age(o)),
            json!(s(o, "/status/nodeInfo/kubeletVersion")),
            json!(address(o, "InternalIP")),
            json!(address(o, "ExternalIP")),
            json!(or_none(s(o, "/status/nodeInfo/osImage"))),
            json!(or_none(s(o, "/status/nodeInfo/kernelVersion"))),
            json!(or_none(s(o, "/status/nodeInfo/containerRuntimeVersion"))),
        ],
        ("", "namespaces") => vec![json!(name), json!(s(o, "/status/phase")), json!(age(o))],
        ("", "configmaps") => vec![json!(name), json!(len(o, "/data") + len(o, "/binaryData")), json!(age(o))],
        ("", "secrets") => vec![json!(name), json!(s(o, "/type")), json!(len(o, "/data")), json!(age(o))],
        ("", "serviceaccounts") => vec![json!(name), json!(len(o, "/secrets")), json!(age(o))],
        ("", "events") => {
            let last = o
                .pointer("/lastTimestamp")
                .filter(|v| !v.is_null())
                .or(o.pointer("/eventTime"))
                .or(o.pointer("/metadata/creationTimestamp"));
            let first = o.pointer("/firstTimestamp").filter(|v| !v.is_null()).or(o.pointer("/eventTime"));
            let object = format!("{}/{}", s(o, "/involvedObject/kind").to_lowercase(), s(o, "/involvedObject/name"));
            let source = [s(o, "/source/component"), s(o, "/source/host")]
                .into_iter()
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                json!(since(last)),
                json!(s(o, "/type")),
                json!(s(o, "/reason")),
                json!(object),
                json!(s(o, "/involvedObject/fieldPath")),
                json!(source),
                json!(s(o, "/message")),
                json!(since(first)),
                json!(i(o, "/count").max(1).to_string()),
                json!(name),
            ]
        }
        ("coordination.k8s.io", "leases") => vec![json!(name), json!(s(o, "/spec/holderIdentity")), json!(age(o))],
        ("flowcontrol.apiserver.k8s.io", "flowschemas") => {
            let method = o.pointer("/spec/distinguisherMethod/type").and_then(Value::as_str).unwrap_or("<none>");
            // The Dangling condition's status, "?" until something has judged it (upstream's printer).
            let dangling = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Dangling"))
                .map_or("?".to_string(), |c| s(c, "/status"));
            vec![
                json!(name),
                json!(s(o, "/spec/priorityLevelConfiguration/name")),
                json!(i(o, "/spec/matchingPrecedence")),
                json!(method),
                json!(age(o)),
                json!(dangling),
            ]
        }
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations") => {
            let limited = o.pointer("/spec/limited");
            let or_none = |v: Option<&Value>| v.cloned().unwrap_or(json!("<none>"));
            let queuing = |k: &str| or_none(limited.and_then(|l| l.pointer(&format!("/limitResponse/queuing/{k}"))));
            vec![
                json!(name),
                json!(s(o, "/spec/type")),
                or_none(limited.and_then(|l| l.get("nominalConcurrencyShares"))),
                queuing("queues"),
                queuing("handSize"),
                queuing("queueLengthLimit"),
                json!(age(o)),
            ]
        }
        ("", "persistentvolumes") => {
            let claim = if o.pointer("/spec/claimRef").is_some() {
                format!("{}/{}", s(o, "/spec/claimRef/namespace"), s(o, "/spec/claimRef/name"))
            } else {
                String::new()
            };
            vec![
                json!(name),
                json!(s(o, "/spec/capacity/storage")),
                json!(access_modes(o.pointer("/spec/accessModes"))),
                json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
                json!(s(o, "/status/phase")),
                json!(claim),
                json!(s(o, "/spec/storageClassName")),
                json!(or_none(s(o, "/spec/volumeAttributesClassName"))),
                json!(s(o, "/status/reason")),
                json!(age(o)),
                json!(s(o, "/spec/volumeMode")),
            ]
        }
        ("", "persistentvolumeclaims") => vec![
            json!(name),
            json!(s(o, "/status/phase")),
            json!(s(o, "/spec/volumeName")),
            json!(s(o, "/status/capacity/storage")),
            json!(access_modes(o.pointer("/status/accessModes"))),
            json!(s(o, "/spec/storageClassName")),
            json!(or_none(s(o, "/spec/volumeAttributesClassName"))),
            json!(age(o)),
            json!(s(o, "/spec/volumeMode")),
        ],
        ("networking.k8s.io", "ingresses") => {
            let hosts: Vec<String> = o
                .pointer("/spec/rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|r| s(r, "/host"))
                .filter(|h| !h.is_empty())
                .collect();
            let addrs: Vec<String> = o
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|x| if x.get("ip").is_some() { s(x, "/ip") } else { s(x, "/hostname") })
                .collect();
            let ports = if o.pointer("/spec/tls").is_some() { "80, 443" } else { "80" };
            vec![
                json!(name),
                json!(or_none(s(o, "/spec/ingressClassName"))),
                json!(if hosts.is_empty() { "*".to_string() } else { hosts.join(",") }),
                json!(addrs.join(",")),
                json!(ports),
                json!(age(o)),
            ]
        }
        ("apiregistration.k8s.io", "apiservices") => {
            // kube-aggregator's table: Local or the Service, and the Available condition with its reason.
            let service = match o.pointer("/spec/service").filter(|s| s.is_object()) {
                Some(svc) => format!("{}/{}", s(svc, "/namespace"), s(svc, "/name")),
                None => "Local".to_string(),
            };
            let available = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"))
                .map(|c| match c["status"].as_str().unwrap_or_default() {
                    "True" => "True".to_string(),
                    st => format!("{st} ({})", c["reason"].as_str().unwrap_or_default()),
                })
                .unwrap_or_else(|| "Unknown".to_string());
            vec![json!(name), json!(service), json!(available), json!(age(o))]
        }
        _ => vec![json!(name), o.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null)],
    }
}

/// What each row carries: `Metadata` (PartialObjectMetadata, the default), `Object` or `None`.
pub fn row_object(obj: &Value, include: &str) -> Option<Value> {
    match include {
        "None" => None,
        "Object" => Some(obj.clone()),
        _ => Some(
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))}),
        ),
    }
}

/// A Table of objects; `list_meta` is the list's metadata (resourceVersion, continue).
pub fn table(
    res: &Resource,
    printer: Option<&crate::apiextensions::printer::TableConvertor>,
    objs: &[Value],
    list_meta: Value,
    include: &str,
    with_columns: bool,
) -> Value {
    // A custom resource shows its CRD's printer columns (upstream's customresource tableconvertor).
    let defs: Vec<Value> = match printer {
        _ if !with_columns => Vec::new(),
        Some(p) => p.column_definitions(),
        None => columns(res)
            .iter()
            .map(|col| {
                let format = if col.name == "Name" { "name" } else { "" };
                json!({"name": col.name, "type": col.ty, "format": format, "description": "", "priority": col.priority})
            })
            .collect(),
    };
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let cells = match printer {
                Some(p) => p.cells(o),
                None => cells(res, o),
            };
            let mut row = json!({"cells": cells});
            if let Some(obj) = row_object(o, include) {
                row["object"] = obj;
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_as_kubectl_prints_them() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(30 * 86400), "30d");
    }

    #[test]
    fn pod_rows_match_kubectl() {
        let res = api_types::resources::find("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "nginx", "creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": {"containers": [{"name": "a"}], "nodeName": "n1"},
                         "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [{"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}}]}});
        let t = table(res, None, &[pod], json!({"resourceVersion": "7"}), "Metadata", true);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(
            (cells[0].clone(), cells[1].clone(), cells[2].clone(), cells[3].clone()),
            (json!("nginx"), json!("1/1"), json!("Running"), json!("2"))
        );
        assert_eq!(cells[6], "n1");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        let waiting = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(cells_of(res, &waiting)[2], "CrashLoopBackOff");
    }

    fn cells_of(res: &Resource, o: &Value) -> Vec<Value> {
        cells(res, o)
    }

    #[test]
    fn default_table_is_name_and_created_at() {
        let res = api_types::resources::find("rbac.authorization.k8s.io", "v1", "roles").unwrap();
        let t = table(
            res,
            None,
            &[json!({"metadata": {"name": "r", "creationTimestamp": "2020-01-01T00:00:00Z"}})],
            json!({}),
            "None",
            true,
        );
        assert_eq!(t["columnDefinitions"][1]["name"], "Created At");
        assert!(t["rows"][0].get("object").is_none());
    }
}
