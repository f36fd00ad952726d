//! `kubeadm init phase addon`: the essential add-ons as upstream's `phases/addons/{dns,proxy}` deploy them:
//! cluster DNS (Deployment `coredns`, Service `kube-dns` at the 10th service IP, the `coredns` Corefile
//! ConfigMap, its RBAC) and kube-proxy (DaemonSet, `kube-proxy` ConfigMap with config.conf and kubeconfig.conf,
//! its ServiceAccount and RBAC).

use serde_json::{Value, json};

use super::{Context, Result, cluster_role_binding, create_or_update, group, role, role_binding};
use crate::config::InitConfig;
use crate::constants as k;

/// kubeadm's Corefile (`CoreDNSConfigMap` in upstream's `dns/manifests.go`).
pub fn corefile(dns_domain: &str) -> String {
    format!(
        ".:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {dns_domain} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    forward . /etc/resolv.conf {{
       max_concurrent 1000
    }}
    cache 30 {{
       disable success {dns_domain}
       disable denial {dns_domain}
    }}
    loop
    reload
    loadbalance
}}
"
    )
}

/// Every object of the DNS add-on, in creation order.
pub fn coredns_objects(cfg: &InitConfig) -> Vec<Value> {
    let dns_ip = crate::util::nth_service_ip(&cfg.cluster.networking.service_subnet, 10)
        .map(|i| i.to_string())
        .unwrap_or_else(|| "10.96.0.10".into());
    let repo = if cfg.cluster.dns.image.image_repository.is_empty() {
        cfg.cluster.image_repository.clone()
    } else {
        cfg.cluster.dns.image.image_repository.clone()
    };
    let tag = if cfg.cluster.dns.image.image_tag.is_empty() {
        k::COREDNS_VERSION.to_string()
    } else {
        cfg.cluster.dns.image.image_tag.clone()
    };
    let image = k::image(&repo, k::COREDNS_IMAGE_NAME, &tag);
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": k::KUBE_SYSTEM}}),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        }),
        cluster_role_binding(
            "system:coredns",
            "system:coredns",
            json!([{"kind": "ServiceAccount", "name": "coredns", "namespace": k::KUBE_SYSTEM}]),
        ),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": k::KUBE_SYSTEM},
            "data": {"Corefile": corefile(&cfg.cluster.networking.dns_domain)},
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": k::KUBE_SYSTEM, "labels": {"k8s-app": "kube-dns"}},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "kube-dns"}},
                    "spec": {
                        "priorityClassName": "system-cluster-critical",
                        "serviceAccountName": "coredns",
                        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": {
                                "labelSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]},
                                "topologyKey": "kubernetes.io/hostname",
                            },
                        }]}},
                        "tolerations": [
                            {"key": "CriticalAddonsOnly", "operator": "Exists"},
                            {"key": k::LABEL_NODE_ROLE_CONTROL_PLANE, "effect": "NoSchedule"},
                        ],
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "containers": [{
                            "name": "coredns",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": true}],
                            "ports": [
                                {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
                            ],
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                                "readOnlyRootFilesystem": true,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                                "initialDelaySeconds": 60, "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": 5,
                            },
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"}},
                        }],
                        "dnsPolicy": "Default",
                        "volumes": [{"name": "config-volume", "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "kube-dns", "namespace": k::KUBE_SYSTEM,
                "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
            },
            "spec": {
                "selector": {"k8s-app": "kube-dns"},
                "clusterIP": dns_ip,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
            },
        }),
    ]
}

/// The kubeconfig kube-proxy pods use (service-account token, the control-plane endpoint).
pub fn kube_proxy_kubeconfig(server: &str) -> String {
    crate::config::marshal(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"cluster": {"certificate-authority": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", "server": server}, "name": "default"}],
        "contexts": [{"context": {"cluster": "default", "namespace": "default", "user": "default"}, "name": "default"}],
        "current-context": "default",
        "users": [{"name": "default", "user": {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}}],
    }))
}

/// Every object of the kube-proxy add-on, in creation order.
pub fn kube_proxy_objects(cfg: &InitConfig) -> Vec<Value> {
    let image = k::image(&cfg.cluster.image_repository, k::KUBE_PROXY, &cfg.cluster.kubernetes_version);
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "kube-proxy", "namespace": k::KUBE_SYSTEM}}),
        cluster_role_binding(
            "kubeadm:node-proxier",
            "system:node-proxier",
            json!([{"kind": "ServiceAccount", "name": "kube-proxy", "namespace": k::KUBE_SYSTEM}]),
        ),
        role(
            k::KUBE_SYSTEM,
            "kube-proxy",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kube-proxy"], "verbs": ["get"]}]),
        ),
        role_binding(k::KUBE_SYSTEM, "kube-proxy", "kube-proxy", json!([group(k::NODE_BOOTSTRAP_TOKEN_AUTH_GROUP)])),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": k::KUBE_PROXY_CONFIGMAP, "namespace": k::KUBE_SYSTEM, "labels": {"app": "kube-proxy"}},
            "data": {
                "config.conf": crate::config::marshal(&cfg.kube_proxy),
                "kubeconfig.conf": kube_proxy_kubeconfig(&cfg.control_plane_url()),
            },
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "kube-proxy", "namespace": k::KUBE_SYSTEM, "labels": {"k8s-app": "kube-proxy"}},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": {"k8s-app": "kube-proxy"}},
                    "spec": {
                        "containers": [{
                            "name": "kube-proxy",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"],
                            "securityContext": {"privileged": true},
                            "volumeMounts": [
                                {"mountPath": "/var/lib/kube-proxy", "name": "kube-proxy"},
                                {"mountPath": "/run/xtables.lock", "name": "xtables-lock", "readOnly": false},
                                {"mountPath": "/lib/modules", "name": "lib-modules", "readOnly": true},
                            ],
                            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                        }],
                        "hostNetwork": true,
                        "serviceAccountName": "kube-proxy",
                        "volumes": [
                            {"name": "kube-proxy", "configMap": {"name": "kube-proxy"}},
                            {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                            {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                        ],
                        "tolerations": [{"operator": "Exists"}],
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "priorityClassName": "system-node-critical",
                    },
                },
            },
        }),
    ]
}

/// API coordinates of an object (group, version, plural).
fn coordinates(obj: &Value) -> (String, String, String) {
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
    let (g, v) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match obj["kind"].as_str().unwrap_or_default() {
        "ServiceAccount" => "serviceaccounts",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "ConfigMap" => "configmaps",
        "Deployment" => "deployments",
        "DaemonSet" => "daemonsets",
        _ => "services",
    };
    (g.to_string(), v.to_string(), plural.to_string())
}

pub async fn apply(c: &client::Client, objs: &[Value]) -> Result<()> {
    for o in objs {
        let (g, v, p) = coordinates(o);
        if p == "services" {
            // A Service's clusterIP and nodePorts are immutable: keep an existing one as it is.
            let api = c.api(&g, &v, &p)?.namespaced(o["metadata"]["namespace"].as_str().unwrap_or_default());
            if api.get(o["metadata"]["name"].as_str().unwrap_or_default()).await.is_ok() {
                continue;
            }
        }
        create_or_update(c, &g, &v, &p, o).await?;
    }
    Ok(())
}

pub async fn run(ctx: &Context, cfg: &InitConfig, only: Option<&str>) -> Result<()> {
    let c = ctx.admin_client()?;
    run_with(ctx, &c, cfg, only).await
}

/// The add-ons through a given client.
pub async fn run_with(ctx: &Context, c: &client::Client, cfg: &InitConfig, only: Option<&str>) -> Result<()> {
    if matches!(only, None | Some("all") | Some("coredns")) {
        if cfg.cluster.dns.disabled {
            ctx.out.line("[addons] Skipping the CoreDNS addon (dns.disabled)");
        } else {
            apply(c, &coredns_objects(cfg)).await?;
            ctx.out.line("[addons] Applied essential addon: CoreDNS");
        }
    }
    if matches!(only, None | Some("all") | Some("kube-proxy")) {
        if cfg.cluster.proxy.disabled {
            ctx.out.line("[addons] Skipping the kube-proxy addon (proxy.disabled)");
        } else {
            apply(c, &kube_proxy_objects(cfg)).await?;
            ctx.out.line("[addons] Applied essential addon: kube-proxy");
        }
    }
    Ok(())
}
