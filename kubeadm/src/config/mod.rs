//! kubeadm's configuration: the `kubeadm.k8s.io/v1beta4` documents ([`types`]), v1beta3 converted ([`v1beta3`]),
//! upstream's static and dynamic defaults, validation, and the KubeletConfiguration and KubeProxyConfiguration
//! documents passed through from the same multi-document YAML ([`componentconfigs`]).

pub mod componentconfigs;
pub mod duration;
pub mod types;
pub mod v1beta3;

use std::net::IpAddr;

use serde_json::Value;

pub use types::*;

use crate::constants as k;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unable to read config from {path:?}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("error converting YAML to JSON: {0}")]
    Yaml(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The documents of one `--config` file.
#[derive(Clone, Debug, Default)]
pub struct Documents {
    pub init: Option<InitConfiguration>,
    pub cluster: Option<ClusterConfiguration>,
    pub join: Option<JoinConfiguration>,
    pub reset: Option<ResetConfiguration>,
    pub upgrade: Option<UpgradeConfiguration>,
    /// `kubelet.config.k8s.io/v1beta1` KubeletConfiguration, as given.
    pub kubelet: Option<Value>,
    /// `kubeproxy.config.k8s.io/v1alpha1` KubeProxyConfiguration, as given.
    pub kube_proxy: Option<Value>,
    /// Warnings for documents that were converted or ignored.
    pub warnings: Vec<String>,
}

/// Splits a multi-document YAML stream on `---` lines.
pub fn split_documents(text: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push(std::mem::take(&mut cur));
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    docs.push(cur);
    docs.into_iter().filter(|d| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))).collect()
}

fn from_value<T: serde::de::DeserializeOwned>(v: Value, kind: &str) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Invalid(format!("{kind}: {e}")))
}

/// Parses every document of a config file, converting v1beta3 to v1beta4.
pub fn parse_documents(text: &str) -> Result<Documents> {
    let mut docs = Documents::default();
    for doc in split_documents(text) {
        let mut v: Value = serde_yaml_ng::from_str(&doc).map_err(|e| Error::Yaml(e.to_string()))?;
        let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        if kind.is_empty() {
            return Err(Error::Invalid("invalid configuration: kind is not set".into()));
        }
        if api_version == GROUP_VERSION_V1BETA3 {
            v = v1beta3::convert(v);
        } else if api_version.starts_with("kubeadm.k8s.io/") && api_version != GROUP_VERSION {
            return Err(Error::Invalid(format!(
                "your configuration file uses an old API spec: {api_version:?} (kind: {kind:?}). Please use kubeadm v1.22 instead and run 'kubeadm config migrate --old-config old.yaml --new-config new.yaml', which will write the new, similar spec using a newer API version."
            )));
        }
        match (api_version.as_str(), kind.as_str()) {
            (GROUP_VERSION | GROUP_VERSION_V1BETA3, "InitConfiguration") => docs.init = Some(from_value(v, &kind)?),
            (GROUP_VERSION | GROUP_VERSION_V1BETA3, "ClusterConfiguration") => {
                docs.cluster = Some(from_value(v, &kind)?)
            }
            (GROUP_VERSION | GROUP_VERSION_V1BETA3, "JoinConfiguration") => docs.join = Some(from_value(v, &kind)?),
            (GROUP_VERSION, "ResetConfiguration") => docs.reset = Some(from_value(v, &kind)?),
            (GROUP_VERSION, "UpgradeConfiguration") => docs.upgrade = Some(from_value(v, &kind)?),
            (componentconfigs::KUBELET_GROUP_VERSION, "KubeletConfiguration") => docs.kubelet = Some(v),
            (componentconfigs::KUBE_PROXY_GROUP_VERSION, "KubeProxyConfiguration") => docs.kube_proxy = Some(v),
            _ => docs.warnings.push(format!(
                "[config] WARNING: Ignored configuration document with GroupVersionKind {api_version}, Kind={kind}"
            )),
        }
    }
    Ok(docs)
}

/// Reads and parses a config file.
pub fn load_file(path: &str) -> Result<Documents> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_string(), source })?;
    parse_documents(&text)
}

/// Upstream's static defaults for the ClusterConfiguration (`SetDefaults_ClusterConfiguration`).
pub fn default_cluster(c: &mut ClusterConfiguration) {
    c.api_version = GROUP_VERSION.into();
    c.kind = "ClusterConfiguration".into();
    if c.kubernetes_version.is_empty() || c.kubernetes_version.starts_with("stable") || c.kubernetes_version == "latest"
    {
        c.kubernetes_version = k::KUBE_VERSION.into();
    }
    // Upstream's `NormalizeKubernetesVersion`: `1.33.0` means `v1.33.0`.
    if c.kubernetes_version.starts_with(|ch: char| ch.is_ascii_digit()) {
        c.kubernetes_version = format!("v{}", c.kubernetes_version);
    }
    if c.networking.service_subnet.is_empty() {
        c.networking.service_subnet = k::DEFAULT_SERVICE_SUBNET.into();
    }
    if c.networking.dns_domain.is_empty() {
        c.networking.dns_domain = k::DEFAULT_DNS_DOMAIN.into();
    }
    if c.certificates_dir.is_empty() {
        c.certificates_dir = k::DEFAULT_CERTIFICATES_DIR.into();
    }
    if c.image_repository.is_empty() {
        c.image_repository = k::DEFAULT_IMAGE_REPOSITORY.into();
    }
    if c.cluster_name.is_empty() {
        c.cluster_name = k::DEFAULT_CLUSTER_NAME.into();
    }
    if c.encryption_algorithm.is_empty() {
        c.encryption_algorithm = crate::pki::DEFAULT_ENCRYPTION_ALGORITHM.into();
    }
    if c.certificate_validity_period.is_none() {
        c.certificate_validity_period = Some(format!("{}h0m0s", k::CERTIFICATE_VALIDITY_HOURS));
    }
    if c.ca_certificate_validity_period.is_none() {
        c.ca_certificate_validity_period = Some(format!("{}h0m0s", k::CA_CERTIFICATE_VALIDITY_HOURS));
    }
    if let Some(local) = &mut c.etcd.local
        && local.data_dir.is_empty()
    {
        local.data_dir = k::DEFAULT_ETCD_DATA_DIR.into();
    }
}

/// Upstream's `SetDefaults_BootstrapToken`.
pub fn default_bootstrap_token(t: &mut BootstrapToken) {
    if t.ttl.is_none() && t.expires.is_none() {
        t.ttl = Some("24h0m0s".into());
    }
    if t.usages.is_empty() {
        t.usages = vec!["signing".into(), "authentication".into()];
    }
    if t.groups.is_empty() {
        t.groups = vec![k::NODE_BOOTSTRAP_TOKEN_AUTH_GROUP.into()];
    }
}

fn default_node_registration(n: &mut NodeRegistrationOptions) {
    if n.image_pull_policy.is_empty() {
        n.image_pull_policy = "IfNotPresent".into();
    }
    if n.image_pull_serial.is_none() {
        n.image_pull_serial = Some(true);
    }
    if n.cri_socket.is_empty() {
        n.cri_socket = k::DEFAULT_CRI_SOCKET.into();
    }
}

/// Upstream's v1beta4 `Timeouts` defaults.
pub fn default_timeouts(t: &mut Option<Timeouts>) {
    let t = t.get_or_insert_with(Timeouts::default);
    let set = |f: &mut Option<String>, v: &str| {
        if f.is_none() {
            *f = Some(v.to_string());
        }
    };
    set(&mut t.control_plane_component_health_check, "4m0s");
    set(&mut t.discovery, "5m0s");
    set(&mut t.etcd_api_call, "2m0s");
    set(&mut t.kubelet_health_check, "4m0s");
    set(&mut t.kubernetes_api_call, "1m0s");
    set(&mut t.tls_bootstrap, "5m0s");
    set(&mut t.upgrade_manifests, "5m0s");
}

/// Upstream's static defaults for the InitConfiguration.
pub fn default_init(c: &mut InitConfiguration) {
    c.api_version = GROUP_VERSION.into();
    c.kind = "InitConfiguration".into();
    if c.bootstrap_tokens.is_empty() {
        c.bootstrap_tokens.push(BootstrapToken::default());
    }
    c.bootstrap_tokens.iter_mut().for_each(default_bootstrap_token);
    if c.local_api_endpoint.bind_port == 0 {
        c.local_api_endpoint.bind_port = k::DEFAULT_API_BIND_PORT;
    }
    default_node_registration(&mut c.node_registration);
    default_timeouts(&mut c.timeouts);
}

/// Upstream's static defaults for the JoinConfiguration.
pub fn default_join(c: &mut JoinConfiguration) {
    c.api_version = GROUP_VERSION.into();
    c.kind = "JoinConfiguration".into();
    if c.ca_cert_path.is_empty() {
        c.ca_cert_path = format!("{}/ca.crt", k::DEFAULT_CERTIFICATES_DIR);
    }
    if let Some(cp) = &mut c.control_plane
        && cp.local_api_endpoint.bind_port == 0
    {
        cp.local_api_endpoint.bind_port = k::DEFAULT_API_BIND_PORT;
    }
    if c.discovery.tls_bootstrap_token.is_empty()
        && let Some(bt) = &c.discovery.bootstrap_token
    {
        c.discovery.tls_bootstrap_token = bt.token.clone();
    }
    if let Some(f) = &mut c.discovery.file
        && let Some(p) = f.kube_config_path.strip_prefix("file://")
    {
        f.kube_config_path = p.to_string();
    }
    default_node_registration(&mut c.node_registration);
    default_timeouts(&mut c.timeouts);
}

/// Upstream's static defaults for the ResetConfiguration.
pub fn default_reset(c: &mut ResetConfiguration) {
    c.api_version = GROUP_VERSION.into();
    c.kind = "ResetConfiguration".into();
    if c.certificates_dir.is_empty() {
        c.certificates_dir = k::DEFAULT_CERTIFICATES_DIR.into();
    }
}

/// This machine's hostname, lowercased (upstream's `GetHostname("")`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// The IPv4 address of the interface holding the default route (upstream's `ChooseHostInterface`), from
/// `/proc/net/route` and the addresses in `/proc/net/fib_trie`; 127.0.0.1 when there is no default route.
pub fn default_host_ip() -> IpAddr {
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let mut gw_iface = None;
    for line in route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" {
            gw_iface = Some(f[0].to_string());
            break;
        }
    }
    let Some(iface) = gw_iface else { return IpAddr::from([127, 0, 0, 1]) };
    // The interface's address: the local route ("/32 host LOCAL") whose network matches one of its routes.
    let mut nets = Vec::new();
    for line in route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 7
            && f[0] == iface
            && f[1] != "00000000"
            && let (Ok(dst), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        {
            nets.push((u32::from_be(dst), u32::from_be(mask)));
        }
    }
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let lines: Vec<&str> = trie.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("/32 host LOCAL")
            && i > 0
            && let Some(ip) = lines[i - 1].trim().trim_start_matches("|-- ").parse::<std::net::Ipv4Addr>().ok()
        {
            let n = u32::from(ip);
            if nets.iter().any(|(dst, mask)| n & mask == *dst) {
                return IpAddr::V4(ip);
            }
        }
    }
    IpAddr::from([127, 0, 0, 1])
}

/// Upstream's `SetInitDynamicDefaults`: node name, advertise address, CRI socket, lowercase names.
pub fn dynamic_defaults_init(init: &mut InitConfiguration, cluster: &mut ClusterConfiguration) -> Result<()> {
    default_init(init);
    default_cluster(cluster);
    if init.node_registration.name.is_empty() {
        init.node_registration.name = hostname();
    }
    init.node_registration.name = init.node_registration.name.to_lowercase();
    if init.local_api_endpoint.advertise_address.is_empty() {
        init.local_api_endpoint.advertise_address = default_host_ip().to_string();
    }
    for t in &mut init.bootstrap_tokens {
        if t.token.is_empty() {
            t.token = crate::token::generate();
        }
    }
    validate_init(init, cluster)
}

/// Checks what upstream's `ValidateInitConfiguration` checks for the fields we use.
pub fn validate_init(init: &InitConfiguration, cluster: &ClusterConfiguration) -> Result<()> {
    let mut errs = Vec::new();
    if init.local_api_endpoint.advertise_address.parse::<IpAddr>().is_err() {
        errs.push(format!(
            "localAPIEndpoint.advertiseAddress: Invalid value: {:?}: must be a valid IP address",
            init.local_api_endpoint.advertise_address
        ));
    }
    for (i, t) in init.bootstrap_tokens.iter().enumerate() {
        if crate::token::parse(&t.token).is_none() {
            errs.push(format!(
                "bootstrapTokens[{i}].token: Invalid value: {:?}: the bootstrap token is invalid",
                t.token
            ));
        }
        if let Some(ttl) = &t.ttl
            && let Err(e) = duration::parse(ttl)
        {
            errs.push(format!("bootstrapTokens[{i}].ttl: Invalid value: {ttl:?}: {e}"));
        }
    }
    errs.extend(validate_cluster_errors(cluster));
    if errs.is_empty() { Ok(()) } else { Err(Error::Invalid(errs.join("\n"))) }
}

fn validate_cluster_errors(c: &ClusterConfiguration) -> Vec<String> {
    let mut errs = Vec::new();
    for subnet in c.networking.service_subnet.split(',') {
        if subnet.parse::<ipnetwork::IpNetwork>().is_err() {
            errs.push(format!("networking.serviceSubnet: Invalid value: {subnet:?}: couldn't parse subnet"));
        }
    }
    if !c.networking.pod_subnet.is_empty() {
        for subnet in c.networking.pod_subnet.split(',') {
            if subnet.parse::<ipnetwork::IpNetwork>().is_err() {
                errs.push(format!("networking.podSubnet: Invalid value: {subnet:?}: couldn't parse subnet"));
            }
        }
    }
    let dns_ok = !c.networking.dns_domain.is_empty()
        && c.networking.dns_domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() < 64
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !dns_ok {
        errs.push(format!(
            "networking.dnsDomain: Invalid value: {:?}: must be a valid DNS subdomain",
            c.networking.dns_domain
        ));
    }
    if crate::pki::KeyAlgorithm::parse(&c.encryption_algorithm).is_none() {
        errs.push(format!(
            "encryptionAlgorithm: Unsupported value: {:?}: supported values: \"ECDSA-P256\", \"ECDSA-P384\"",
            c.encryption_algorithm
        ));
    }
    if !c.kubernetes_version.starts_with('v')
        && !c.kubernetes_version.chars().next().is_some_and(|ch| ch.is_ascii_digit())
    {
        errs.push(format!("kubernetesVersion: Invalid value: {:?}: invalid version", c.kubernetes_version));
    }
    for (field, v) in [
        ("certificateValidityPeriod", &c.certificate_validity_period),
        ("caCertificateValidityPeriod", &c.ca_certificate_validity_period),
    ] {
        if let Some(v) = v
            && let Err(e) = duration::parse(v)
        {
            errs.push(format!("{field}: Invalid value: {v:?}: {e}"));
        }
    }
    if c.etcd.local.is_some() && c.etcd.external.is_some() {
        errs.push("etcd: Invalid value: \"\": either .Etcd.Local or .Etcd.External is required".into());
    }
    if let Some(ext) = &c.etcd.external
        && ext.endpoints.is_empty()
    {
        errs.push("etcd.external.endpoints: Required value: empty etcd external endpoints".into());
    }
    if !c.control_plane_endpoint.is_empty() && crate::util::split_host_port(&c.control_plane_endpoint).is_err() {
        errs.push(format!("controlPlaneEndpoint: Invalid value: {:?}", c.control_plane_endpoint));
    }
    errs
}

/// Validation of a ClusterConfiguration alone.
pub fn validate_cluster(c: &ClusterConfiguration) -> Result<()> {
    let errs = validate_cluster_errors(c);
    if errs.is_empty() { Ok(()) } else { Err(Error::Invalid(errs.join("\n"))) }
}

/// Marshals as upstream does (`sigs.k8s.io/yaml`: through JSON, keys sorted).
pub fn marshal<T: serde::Serialize>(v: &T) -> String {
    let v = serde_json::to_value(v).unwrap_or(Value::Null);
    serde_yaml_ng::to_string(&sort_keys(v)).unwrap_or_default()
}

/// The same value with every object's keys sorted.
pub fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sort_keys(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort_keys).collect()),
        v => v,
    }
}

/// The InitConfiguration and ClusterConfiguration of `--config` (or the defaults), with component configs, all
/// defaulted: what `kubeadm init` and its phases run from.
#[derive(Clone, Debug)]
pub struct InitConfig {
    pub init: InitConfiguration,
    pub cluster: ClusterConfiguration,
    pub kubelet: Value,
    pub kube_proxy: Value,
}

impl InitConfig {
    /// Defaulted configuration from parsed documents.
    pub fn from_documents(docs: Documents) -> Result<Self> {
        let mut init = docs.init.unwrap_or_default();
        let mut cluster = docs.cluster.unwrap_or_default();
        dynamic_defaults_init(&mut init, &mut cluster)?;
        let kubelet = componentconfigs::kubelet_defaults(&cluster, docs.kubelet);
        let kube_proxy = componentconfigs::kube_proxy_defaults(&init, &cluster, docs.kube_proxy);
        Ok(InitConfig { init, cluster, kubelet, kube_proxy })
    }

    /// Whether the apiserver keeps its data in etcd (local or external) rather than its embedded store.
    pub fn uses_etcd(&self) -> bool {
        self.cluster.etcd.local.is_some() || self.cluster.etcd.external.is_some()
    }

    pub fn node_name(&self) -> &str {
        &self.init.node_registration.name
    }

    pub fn advertise_address(&self) -> &str {
        &self.init.local_api_endpoint.advertise_address
    }

    pub fn bind_port(&self) -> u16 {
        self.init.local_api_endpoint.bind_port
    }

    pub fn cert_dir(&self) -> &str {
        &self.cluster.certificates_dir
    }

    /// `https://<controlPlaneEndpoint or advertise address:port>`.
    pub fn control_plane_url(&self) -> String {
        let endpoint = if self.cluster.control_plane_endpoint.is_empty() {
            crate::util::join_host_port(self.advertise_address(), self.bind_port())
        } else {
            let (h, p) = crate::util::split_host_port(&self.cluster.control_plane_endpoint).unwrap_or_default();
            crate::util::join_host_port(&h, p.unwrap_or(self.bind_port()))
        };
        format!("https://{endpoint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1beta3_documents_convert_and_component_configs_pass_through() {
        let text = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\ncontrollerManager:\n  extraArgs:\n    cluster-signing-key-file: /etc/kubernetes/pki/ca.key\n    cluster-signing-cert-file: /etc/kubernetes/pki/ca.crt\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nserverTLSBootstrap: true\n";
        let docs = parse_documents(text).unwrap();
        let cluster = docs.cluster.unwrap();
        assert_eq!(
            cluster.controller_manager.extra_args,
            vec![
                Arg { name: "cluster-signing-cert-file".into(), value: "/etc/kubernetes/pki/ca.crt".into() },
                Arg { name: "cluster-signing-key-file".into(), value: "/etc/kubernetes/pki/ca.key".into() },
            ]
        );
        assert_eq!(docs.kubelet.unwrap()["serverTLSBootstrap"], true);
    }

    #[test]
    fn rejects_bad_fields_with_upstream_paths() {
        let mut init = InitConfiguration::default();
        let mut cluster = ClusterConfiguration {
            networking: Networking { service_subnet: "nope".into(), ..Default::default() },
            ..Default::default()
        };
        init.local_api_endpoint.advertise_address = "1.2.3.4".into();
        init.node_registration.name = "n".into();
        let err = dynamic_defaults_init(&mut init, &mut cluster).unwrap_err().to_string();
        assert!(err.contains("networking.serviceSubnet: Invalid value: \"nope\""), "{err}");
        assert!(parse_documents("apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\n").is_err());
        assert!(parse_documents("foo: bar\n").is_err());
    }

    #[test]
    fn marshal_sorts_keys_as_upstream() {
        let v = serde_json::json!({"b": 1, "a": {"d": 2, "c": 3}});
        assert_eq!(marshal(&v), "a:\n  c: 3\n  d: 2\nb: 1\n");
    }
}
