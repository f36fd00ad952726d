//! kube-apiserver's command-line flags, with upstream's names and defaults.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Parses a Go duration (`1m0s`, `300ms`, `5m`, `1h0m0s`), as upstream's flags take them.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if (c == 'm' || c == 'u' || c == 'n' || c == 'µ') && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(format!("invalid duration {s:?}: unknown unit {unit:?}")),
        };
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!("invalid duration {s:?}: missing unit"));
    }
    Ok(Duration::from_secs_f64(total))
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_go_duration(s)
}

#[derive(clap::Parser, Debug, Clone)]
#[command(name = "kube-apiserver", version, about = "The Kubernetes API server")]
pub struct Options {
    /// The port on which to serve HTTPS with authentication and authorization.
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// The IP address on which to listen for the --secure-port port.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The IP address on which to advertise the apiserver to members of the cluster (the `kubernetes` Service).
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// File containing the default x509 certificate for HTTPS.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// File containing the default x509 private key matching --tls-cert-file.
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// The directory where a self-signed pair is written when --tls-cert-file is not given.
    #[arg(long, default_value = "/var/run/kubernetes")]
    pub cert_dir: PathBuf,
    /// A CA bundle; client certificates signed by it authenticate with their CommonName (user) and Organizations (groups).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// A CSV file of static bearer tokens: token,user,uid,"group1,group2".
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Requests without credentials are served as system:anonymous.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// Ordered list of authorizers: AlwaysAllow, AlwaysDeny, Node, RBAC (comma separated); the first decisive
    /// answer wins. Members of system:masters are always allowed.
    #[arg(long, default_value = "AlwaysAllow", value_delimiter = ',')]
    pub authorization_mode: Vec<String>,
    /// Files with PEM public keys (or private keys, or certificates) that verify service-account tokens.
    #[arg(long, action = clap::ArgAction::Append, value_delimiter = ',')]
    pub service_account_key_file: Vec<PathBuf>,
    /// The private key that signs service-account tokens (TokenRequest).
    #[arg(long)]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// The issuer (`iss`) of service-account tokens; repeatable: the first signs, all are accepted.
    #[arg(long, action = clap::ArgAction::Append)]
    pub service_account_issuer: Vec<String>,
    /// The longest token a TokenRequest may get (0: no limit).
    #[arg(long, default_value = "0", value_parser = duration)]
    pub service_account_max_token_expiration: Duration,
    /// Extends kube-api-access tokens (3607s) to a year, warning after their requested life, as upstream.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub service_account_extend_token_expiration: bool,
    /// Overrides the JWKS URI in the OIDC discovery document.
    #[arg(long)]
    pub service_account_jwks_uri: Option<String>,
    /// Audiences the API accepts in tokens (defaults to the service-account issuers).
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// Bootstrap tokens (`bootstrap-token-<id>` Secrets in kube-system) authenticate.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_bootstrap_token_auth: bool,
    /// The client certificate the apiserver presents to kubelets.
    #[arg(long)]
    pub kubelet_client_certificate: Option<PathBuf>,
    /// The key of --kubelet-client-certificate.
    #[arg(long)]
    pub kubelet_client_key: Option<PathBuf>,
    /// The CA that signs kubelet serving certificates; without it they are not verified.
    #[arg(long)]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Admission plugins to turn on besides the defaults (accepted: NodeRestriction, ServiceAccount, ...).
    #[arg(long, value_delimiter = ',')]
    pub enable_admission_plugins: Vec<String>,
    /// Default admission plugins to turn off.
    #[arg(long, value_delimiter = ',')]
    pub disable_admission_plugins: Vec<String>,
    /// Most non-mutating requests in flight at once; past it, 429.
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Most mutating requests in flight at once; past it, 429.
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// How long a non-long-running request may take.
    #[arg(long, default_value = "1m0s", value_parser = duration)]
    pub request_timeout: Duration,
    /// Watches last a random time between this and twice this, unless the client says otherwise.
    #[arg(long, default_value_t = 1800)]
    pub min_request_timeout: u64,
    /// etcd servers to use (scheme://ip:port, comma separated); without them the embedded store is used.
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    #[arg(long)]
    pub etcd_certfile: Option<PathBuf>,
    #[arg(long)]
    pub etcd_keyfile: Option<PathBuf>,
    /// The prefix of every key in etcd.
    #[arg(long, default_value = "/registry")]
    pub etcd_prefix: String,
    /// The media type built-in objects are stored in: application/vnd.kubernetes.protobuf (upstream's default) or
    /// application/json. Custom resources are stored as JSON whatever it says; objects stored either way are read.
    #[arg(long, default_value = "application/vnd.kubernetes.protobuf")]
    pub storage_media_type: crate::registry::StorageMediaType,
    /// How often storage history is compacted (0 disables).
    #[arg(long, default_value = "5m0s", value_parser = duration)]
    pub etcd_compaction_interval: Duration,
    /// Where the embedded store keeps its database (ours; upstream always needs etcd).
    #[arg(long, default_value = "/var/lib/kube-apiserver")]
    pub data_dir: PathBuf,
    /// CIDR range from which to assign service cluster IPs.
    #[arg(long, default_value = "10.0.0.0/24")]
    pub service_cluster_ip_range: String,
    /// Port range for NodePort services.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// How long events are kept.
    #[arg(long, default_value = "1h0m0s", value_parser = duration)]
    pub event_ttl: Duration,
    /// Whether pods may run privileged containers; without it a pod asking for `privileged: true` is refused
    /// (Forbidden: disallowed by cluster policy).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub allow_privileged: bool,
    /// The order in which a node's addresses are tried to reach its kubelet (logs, exec, port-forward, proxy).
    #[arg(long, value_delimiter = ',', default_value = "Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP")]
    pub kubelet_preferred_address_types: Vec<String>,
    /// The CA that signs front proxies' client certificates: such a certificate (with an allowed common name)
    /// may assert the user in the --requestheader-*-headers.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names a front proxy's client certificate may have (empty: any certificate of the requestheader CA).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// Request headers that carry the username (the first non-empty one wins). X-Remote-User is common.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_username_headers: Vec<String>,
    /// Request headers that carry the user's UID.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_uid_headers: Vec<String>,
    /// Request headers that carry the user's groups (every value of each). X-Remote-Group is common.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_group_headers: Vec<String>,
    /// Prefixes of request headers that carry extra user attributes (`X-Remote-Extra-<key>: <value>`).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_extra_headers_prefix: Vec<String>,
    /// The client certificate the apiserver presents when it proxies to aggregated API servers (front-proxy-client).
    #[arg(long)]
    pub proxy_client_cert_file: Option<PathBuf>,
    /// The key of --proxy-client-cert-file.
    #[arg(long)]
    pub proxy_client_key_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m0s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_go_duration("1h0m0s").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_go_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_go_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("5x").is_err());
    }

    #[test]
    fn upstream_flag_forms() {
        let o = Options::try_parse_from([
            "kube-apiserver",
            "--secure-port=6444",
            "--anonymous-auth=false",
            "--etcd-servers=https://127.0.0.1:2379,https://127.0.0.2:2379",
            "--request-timeout=30s",
        ])
        .unwrap();
        assert_eq!(o.secure_port, 6444);
        assert!(!o.anonymous_auth);
        assert_eq!(o.etcd_servers.len(), 2);
        assert_eq!(o.request_timeout, Duration::from_secs(30));
        let o = Options::try_parse_from([
            "kube-apiserver",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://a",
            "--service-account-issuer=https://b",
            "--service-account-key-file=/k1",
            "--service-account-key-file=/k2",
            "--service-account-max-token-expiration=48h",
            "--enable-bootstrap-token-auth",
        ])
        .unwrap();
        assert_eq!(o.authorization_mode, ["Node", "RBAC"]);
        assert_eq!(o.service_account_issuer, ["https://a", "https://b"]);
        assert_eq!(o.service_account_key_file.len(), 2);
        assert_eq!(o.service_account_max_token_expiration, Duration::from_secs(48 * 3600));
        assert!(o.enable_bootstrap_token_auth);
        let o = Options::try_parse_from(["kube-apiserver"]).unwrap();
        assert!(o.anonymous_auth);
        assert!(!o.allow_privileged, "upstream's default");
        assert_eq!(
            o.kubelet_preferred_address_types,
            ["Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP"]
        );
        assert_eq!(o.data_dir, PathBuf::from("/var/lib/kube-apiserver"));
    }

    /// The command kubeadm 1.33 writes into kube-apiserver.yaml (local etcd).
    #[test]
    fn kubeadms_command_line() {
        let pki = |f: &str| format!("/etc/kubernetes/pki/{f}");
        let o = Options::try_parse_from([
            "kube-apiserver".to_string(),
            "--advertise-address=10.0.0.10".into(),
            "--allow-privileged=true".into(),
            "--authorization-mode=Node,RBAC".into(),
            format!("--client-ca-file={}", pki("ca.crt")),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--enable-bootstrap-token-auth=true".into(),
            format!("--etcd-cafile={}", pki("etcd/ca.crt")),
            format!("--etcd-certfile={}", pki("apiserver-etcd-client.crt")),
            format!("--etcd-keyfile={}", pki("apiserver-etcd-client.key")),
            "--etcd-servers=https://127.0.0.1:2379".into(),
            format!("--kubelet-client-certificate={}", pki("apiserver-kubelet-client.crt")),
            format!("--kubelet-client-key={}", pki("apiserver-kubelet-client.key")),
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
            format!("--proxy-client-cert-file={}", pki("front-proxy-client.crt")),
            format!("--proxy-client-key-file={}", pki("front-proxy-client.key")),
            "--requestheader-allowed-names=front-proxy-client".into(),
            format!("--requestheader-client-ca-file={}", pki("front-proxy-ca.crt")),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--secure-port=6443".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", pki("sa.pub")),
            format!("--service-account-signing-key-file={}", pki("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/12".into(),
            format!("--tls-cert-file={}", pki("apiserver.crt")),
            format!("--tls-private-key-file={}", pki("apiserver.key")),
        ])
        .unwrap();
        assert!(o.allow_privileged && o.enable_bootstrap_token_auth);
        assert_eq!(o.kubelet_preferred_address_types, ["InternalIP", "ExternalIP", "Hostname"]);
        assert_eq!(o.requestheader_allowed_names, ["front-proxy-client"]);
        assert_eq!(o.requestheader_username_headers, ["X-Remote-User"]);
        assert_eq!(o.requestheader_group_headers, ["X-Remote-Group"]);
        assert_eq!(o.requestheader_extra_headers_prefix, ["X-Remote-Extra-"]);
        assert_eq!(o.etcd_servers, ["https://127.0.0.1:2379"]);
    }
}
