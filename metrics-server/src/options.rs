//! metrics-server's flags, with upstream's names and defaults (cmd/metrics-server/app/options: the generic
//! apiserver's secure serving, delegated authentication and authorization, the kubelet client) and its checks.

use std::path::PathBuf;
use std::time::Duration;

fn duration(s: &str) -> Result<Duration, String> {
    api_types::duration::parse(s).ok_or_else(|| format!("invalid duration {s:?}"))
}

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "metrics-server", about = "Scrapes the kubelets' resource metrics and serves the metrics.k8s.io API")]
pub struct Options {
    /// The resolution at which metrics-server will retain metrics, must set value at least 10s.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub metric_resolution: Duration,
    /// The path to the kubeconfig used to connect to the Kubernetes API server and the Kubelets (defaults to
    /// in-cluster config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The IP address on which to listen for the --secure-port port.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,
    /// The port on which to serve HTTPS with authentication and authorization (0: a free port, for tests).
    #[arg(long, default_value_t = 443)]
    pub secure_port: u16,
    /// The directory where the TLS certs are located; ignored when --tls-cert-file and --tls-private-key-file
    /// are given.
    #[arg(long, default_value = "apiserver.local.config/certificates")]
    pub cert_dir: PathBuf,
    /// The serving certificate (else a self-signed one for localhost, generated into --cert-dir).
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Do not verify CA of serving certificates presented by Kubelets.  For testing purposes only.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub kubelet_insecure_tls: bool,
    /// Use the port in the node status. Takes precedence over --kubelet-port flag.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub kubelet_use_node_status_port: bool,
    /// The port to use to connect to Kubelets.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// The priority of node address types to use when determining which address to use to connect to a
    /// particular node.
    #[arg(long, value_delimiter = ',', default_value = "Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP")]
    pub kubelet_preferred_address_types: Vec<String>,
    /// Path to the CA to use to validate the Kubelet's serving certificates.
    #[arg(long)]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Path to a client cert file for TLS.
    #[arg(long)]
    pub kubelet_client_certificate: Option<PathBuf>,
    /// Path to a client key file for TLS.
    #[arg(long)]
    pub kubelet_client_key: Option<PathBuf>,
    /// The length of time to wait before giving up on a single request to Kubelet.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub kubelet_request_timeout: Duration,
    /// Selector (label query) to filter on, not including uninitialized ones, supports '=', '==', and '!='.
    #[arg(short = 'l', long, default_value = "")]
    pub node_selector: String,
    /// `--authentication-kubeconfig`, `--authorization-kubeconfig` (default: the --kubeconfig connection),
    /// `--client-ca-file`, `--requestheader-*`, `--authorization-always-allow-paths`.
    #[command(flatten)]
    pub delegating: runtime::delegating_auth::Flags,
    /// klog verbosity, accepted for compatibility (use RUST_LOG).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}

impl Options {
    /// Upstream's `Validate`: the messages of its options and kubelet client checks.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.kubelet_certificate_authority.is_some() && self.kubelet_insecure_tls {
            errors.push("cannot use both --kubelet-certificate-authority and --kubelet-insecure-tls".into());
        }
        if self.kubelet_client_key.is_some() != self.kubelet_client_certificate.is_some() {
            errors.push("need both --kubelet-client-key and --kubelet-client-certificate".into());
        }
        if self.kubelet_request_timeout.is_zero() {
            errors.push("kubelet-request-timeout should be positive".into());
        }
        if self.metric_resolution < Duration::from_secs(10) {
            errors.push(format!(
                "metric-resolution should be a time duration at least 10s, but value {} provided",
                api_types::duration::format(self.metric_resolution.as_nanos() as i64)
            ));
        }
        if self.metric_resolution * 9 / 10 < self.kubelet_request_timeout {
            errors.push(format!(
                "metric-resolution should be larger than kubelet-request-timeout, but metric-resolution value {} kubelet-request-timeout value {} provided",
                api_types::duration::format(self.metric_resolution.as_nanos() as i64),
                api_types::duration::format(self.kubelet_request_timeout.as_nanos() as i64)
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_private_key_file.is_some() {
            errors.push("--tls-cert-file and --tls-private-key-file must both be given".into());
        }
        errors
    }

    /// The connection to the kubelets: the apiserver connection's credentials, with the kubelet TLS flags.
    pub fn kubelet_client_config(&self, rest: &client::Config) -> Result<client::Config, String> {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut cfg = rest.clone();
        if self.kubelet_insecure_tls {
            cfg.insecure_skip_tls_verify = true;
            cfg.ca_pem = None;
        }
        if let Some(ca) = &self.kubelet_certificate_authority {
            cfg.ca_pem = Some(read(ca)?);
        }
        if let (Some(cert), Some(key)) = (&self.kubelet_client_certificate, &self.kubelet_client_key) {
            cfg.client_cert_pem = Some(read(cert)?);
            cfg.client_key_pem = Some(read(key)?);
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The arguments of upstream's manifest, and its defaults.
    #[test]
    fn upstream_manifest_arguments() {
        let o = Options::try_parse_from([
            "metrics-server",
            "--cert-dir=/tmp",
            "--secure-port=10250",
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
            "--kubelet-use-node-status-port",
            "--metric-resolution=15s",
        ])
        .unwrap();
        assert_eq!(o.secure_port, 10250);
        assert_eq!(o.metric_resolution, Duration::from_secs(15));
        assert!(o.kubelet_use_node_status_port && !o.kubelet_insecure_tls);
        assert_eq!(o.kubelet_preferred_address_types, ["InternalIP", "ExternalIP", "Hostname"]);
        assert!(o.validate().is_empty());
        let d = Options::try_parse_from(["metrics-server"]).unwrap();
        assert_eq!((d.secure_port, d.kubelet_port), (443, 10250));
        assert_eq!(d.metric_resolution, Duration::from_secs(60));
        assert_eq!(d.kubelet_request_timeout, Duration::from_secs(10));
        assert_eq!(d.kubelet_preferred_address_types, crate::scraper::client::DEFAULT_ADDRESS_TYPES);
        assert_eq!(d.delegating.authorization_always_allow_paths, ["/healthz", "/readyz", "/livez"]);
    }

    /// Upstream's options_test.go cases.
    #[test]
    fn validation() {
        let parse = |args: &[&str]| Options::try_parse_from([&["metrics-server"], args].concat()).unwrap().validate();
        assert_eq!(
            parse(&["--metric-resolution=5s"]),
            [
                "metric-resolution should be a time duration at least 10s, but value 5s provided",
                "metric-resolution should be larger than kubelet-request-timeout, but metric-resolution value 5s kubelet-request-timeout value 10s provided",
            ]
        );
        assert_eq!(
            parse(&["--metric-resolution=10s"]),
            [
                "metric-resolution should be larger than kubelet-request-timeout, but metric-resolution value 10s kubelet-request-timeout value 10s provided",
            ]
        );
        assert!(parse(&["--metric-resolution=15s", "--kubelet-request-timeout=5s"]).is_empty());
        assert_eq!(
            parse(&["--kubelet-insecure-tls", "--kubelet-certificate-authority=/ca.crt"]),
            ["cannot use both --kubelet-certificate-authority and --kubelet-insecure-tls"]
        );
        assert_eq!(
            parse(&["--kubelet-client-key=/k"]),
            ["need both --kubelet-client-key and --kubelet-client-certificate"]
        );
    }
}
