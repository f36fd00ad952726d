//! Versions, image names, paths, ports and names kubeadm shares with the components (upstream's
//! `cmd/kubeadm/app/constants`). The images built by `deploy/images/` carry exactly the names [`images`] returns.

/// The Kubernetes version this kubeadm installs (`kubeadm version`, `kubernetesVersion` default).
pub const KUBE_VERSION: &str = "v1.33.0";
/// The default image registry (upstream's `DefaultImageRepository`).
pub const DEFAULT_IMAGE_REPOSITORY: &str = "registry.k8s.io";
/// CoreDNS's image (upstream's `CoreDNSImageName` / `CoreDNSVersion` for 1.33), served by our cluster DNS.
pub const COREDNS_IMAGE_NAME: &str = "coredns/coredns";
pub const COREDNS_VERSION: &str = "v1.12.0";
/// etcd's image tag for 1.33 (upstream's `SupportedEtcdVersion`).
pub const ETCD_VERSION: &str = "3.5.21-0";
/// The pause (sandbox) image (upstream's `PauseVersion`).
pub const PAUSE_VERSION: &str = "3.10";

pub const KUBE_APISERVER: &str = "kube-apiserver";
pub const KUBE_CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const KUBE_SCHEDULER: &str = "kube-scheduler";
pub const KUBE_PROXY: &str = "kube-proxy";
pub const ETCD: &str = "etcd";
pub const COREDNS: &str = "coredns";
pub const PAUSE: &str = "pause";

/// `<repo>/<name>:<tag>`.
pub fn image(repo: &str, name: &str, tag: &str) -> String {
    format!("{repo}/{name}:{tag}")
}

/// The images `kubeadm config images list` prints, in upstream's order. `etcd` is left out when the control
/// plane stores its data in the apiserver's embedded store (our default).
pub fn images(repo: &str, version: &str, with_etcd: bool) -> Vec<String> {
    let mut v = vec![
        image(repo, KUBE_APISERVER, version),
        image(repo, KUBE_CONTROLLER_MANAGER, version),
        image(repo, KUBE_SCHEDULER, version),
        image(repo, KUBE_PROXY, version),
        image(repo, COREDNS_IMAGE_NAME, COREDNS_VERSION),
        image(repo, PAUSE, PAUSE_VERSION),
    ];
    if with_etcd {
        v.push(image(repo, ETCD, ETCD_VERSION));
    }
    v
}

pub const KUBERNETES_DIR: &str = "/etc/kubernetes";
pub const MANIFESTS_SUBDIR: &str = "manifests";
pub const DEFAULT_CERTIFICATES_DIR: &str = "/etc/kubernetes/pki";
pub const ADMIN_KUBECONFIG: &str = "admin.conf";
pub const SUPER_ADMIN_KUBECONFIG: &str = "super-admin.conf";
pub const KUBELET_KUBECONFIG: &str = "kubelet.conf";
pub const KUBELET_BOOTSTRAP_KUBECONFIG: &str = "bootstrap-kubelet.conf";
pub const CONTROLLER_MANAGER_KUBECONFIG: &str = "controller-manager.conf";
pub const SCHEDULER_KUBECONFIG: &str = "scheduler.conf";
pub const TEMP_DIR: &str = "/etc/kubernetes/tmp";

pub const KUBELET_RUN_DIR: &str = "/var/lib/kubelet";
pub const KUBELET_CONFIG_FILE: &str = "config.yaml";
pub const KUBELET_ENV_FILE: &str = "kubeadm-flags.env";
pub const KUBELET_PKI_DIR: &str = "/var/lib/kubelet/pki";

/// Where the apiserver's embedded store keeps its database (kube-apiserver's `--data-dir` default).
pub const APISERVER_DATA_DIR: &str = "/var/lib/kube-apiserver";
pub const DEFAULT_ETCD_DATA_DIR: &str = "/var/lib/etcd";

pub const DEFAULT_API_BIND_PORT: u16 = 6443;
pub const KUBE_CONTROLLER_MANAGER_PORT: u16 = 10257;
pub const KUBE_SCHEDULER_PORT: u16 = 10259;
pub const KUBELET_PORT: u16 = 10250;
pub const KUBELET_HEALTHZ_PORT: u16 = 10248;
pub const ETCD_LISTEN_CLIENT_PORT: u16 = 2379;
pub const ETCD_LISTEN_PEER_PORT: u16 = 2380;
pub const ETCD_METRICS_PORT: u16 = 2381;

pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";
pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";
pub const DEFAULT_CLUSTER_NAME: &str = "kubernetes";
pub const DEFAULT_CRI_SOCKET: &str = "unix:///var/run/containerd/containerd.sock";

/// Certificate lifetimes (upstream's `CertificateValidityPeriod` and `CACertificateValidityPeriod`).
pub const CERTIFICATE_VALIDITY_HOURS: u64 = 24 * 365;
pub const CA_CERTIFICATE_VALIDITY_HOURS: u64 = 24 * 365 * 10;

pub const KUBE_SYSTEM: &str = "kube-system";
pub const KUBE_PUBLIC: &str = "kube-public";
pub const KUBEADM_CONFIG_CONFIGMAP: &str = "kubeadm-config";
pub const CLUSTER_CONFIGURATION_KEY: &str = "ClusterConfiguration";
pub const KUBELET_CONFIG_CONFIGMAP: &str = "kubelet-config";
pub const KUBELET_CONFIG_KEY: &str = "kubelet";
pub const KUBE_PROXY_CONFIGMAP: &str = "kube-proxy";
pub const KUBEADM_CERTS_SECRET: &str = "kubeadm-certs";
pub const CLUSTER_INFO: &str = "cluster-info";

pub const LABEL_NODE_ROLE_CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";
pub const LABEL_EXCLUDE_FROM_EXTERNAL_LB: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
pub const ANNOTATION_CRI_SOCKET: &str = "kubeadm.alpha.kubernetes.io/cri-socket";
pub const ANNOTATION_APISERVER_ENDPOINT: &str = "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint";
pub const ANNOTATION_ETCD_CLIENT_URLS: &str = "kubeadm.kubernetes.io/etcd.advertise-client-urls";

/// Groups and users (upstream's `constants.go`).
pub const SYSTEM_PRIVILEGED_GROUP: &str = "system:masters";
pub const CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";
pub const CLUSTER_ADMINS_BINDING: &str = "kubeadm:cluster-admins";
pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_BOOTSTRAP_TOKEN_AUTH_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
pub const NODE_USER_PREFIX: &str = "system:node:";
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
pub const SCHEDULER_USER: &str = "system:kube-scheduler";
pub const APISERVER_KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";
pub const APISERVER_ETCD_CLIENT_CN: &str = "kube-apiserver-etcd-client";
pub const FRONT_PROXY_CLIENT_CN: &str = "front-proxy-client";
pub const ETCD_HEALTHCHECK_CLIENT_CN: &str = "kube-etcd-healthcheck-client";
