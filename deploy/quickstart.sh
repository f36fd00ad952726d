#!/usr/bin/env bash
# Quick start: installs what is needed, builds in release mode, creates a CA and certificates under
# /etc/kubernetes/pki, writes the admin kubeconfig (/etc/kubernetes/admin.conf, copied to ~/.kube/config) and starts
# kube-apiserver on the embedded store: under systemd when it is PID 1, otherwise as a background process.
# Then it configures and starts containerd, builds and imports the pause and busybox images, and starts the kubelet,
# which registers this machine as a Ready node (pod CIDR 10.244.0.0/24, bridge networking), then
# kube-controller-manager, kube-scheduler and kube-proxy (nftables mode) with their own certificates and
# kubeconfigs, and last the add-ons: cluster DNS (kube-dns at 10.96.0.10), NetworkPolicy enforcement and
# metrics-server (kubectl top, through the apiserver's aggregation layer).
# Authorization is Node,RBAC with NodeRestriction (as kubeadm sets it up); pods get service-account tokens signed with /etc/kubernetes/pki/sa.key;
# the kubelet API takes client certificates and tokens and asks the apiserver (SubjectAccessReview) who may do what.
# Stop it with deploy/stop.sh; wipe everything with deploy/stop.sh --wipe.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "==> $*"; }

step "installing dependencies"
bash deploy/install-deps.sh
command -v openssl >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }

step "building (release)"
cargo build --release --workspace --locked
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy network-policy; do install -m 0755 "target/release/$b" /usr/local/bin/; done
systemd=false; [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ] && systemd=true

# daemon <name> <args...>: (re)starts /usr/local/bin/<name> under systemd (its unit in deploy/, arguments in
# /etc/default/<name>) or, without systemd, in the background with its pid in /run/<name>.pid.
daemon() {
  local name=$1; shift
  if $systemd; then
    step "starting $name under systemd"
    local var; var=$(echo "$name" | tr 'a-z-' 'A-Z_')_ARGS
    install -m 0644 "deploy/$name.service" "/etc/systemd/system/$name.service"
    mkdir -p /etc/default && echo "$var=\"$*\"" > "/etc/default/$name"
    systemctl daemon-reload && systemctl enable "$name" && systemctl restart "$name"
  else
    step "starting $name in the background (no systemd here)"
    if [ -f "/run/$name.pid" ] && kill -0 "$(cat "/run/$name.pid")" 2>/dev/null; then
      kill "$(cat "/run/$name.pid")"; sleep 1
    fi
    nohup "/usr/local/bin/$name" "$@" >>"/var/log/$name.log" 2>&1 &
    echo $! > "/run/$name.pid"
  fi
}

# kubeconfig <file> <user> <cert> <key>: a kubeconfig for the local apiserver with a client certificate.
kubeconfig() {
  cat > "$1" <<CONF
apiVersion: v1
kind: Config
clusters:
- name: kubernetes
  cluster:
    server: https://127.0.0.1:$PORT
    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 < "$3")
    client-key-data: $(base64 -w0 < "$4")
contexts:
- name: $2@kubernetes
  context: {cluster: kubernetes, user: $2}
current-context: $2@kubernetes
CONF
  chmod 600 "$1"
}

# client_cert <name> <subject>: a client certificate signed by the cluster CA.
client_cert() {
  [ -f "$PKI/$1.crt" ] && return 0
  openssl req -newkey rsa:2048 -nodes -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "$2" 2>/dev/null
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -out "$PKI/$1.crt" -days 365 -extfile "$PKI/client.ext" 2>/dev/null
  rm -f "$PKI/$1.csr"; chmod 600 "$PKI/$1.key"
}

PKI=/etc/kubernetes/pki
mkdir -p "$PKI" /var/lib/kube-apiserver
HOST_IP=$(ip -4 route get 192.0.2.1 2>/dev/null | awk '{for(i=1;i<=NF;i++) if ($i=="src") print $(i+1)}' | head -1)
HOST_IP=${HOST_IP:-127.0.0.1}
SERVICE_CIDR=10.96.0.0/12
PORT=${KUBE_APISERVER_PORT:-6443}

if [ ! -f "$PKI/ca.key" ]; then
  step "creating the cluster CA and certificates in $PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 3650 \
    -subj "/CN=kubernetes" 2>/dev/null
  cat > "$PKI/apiserver.ext" <<EXT
subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$(hostname),IP:127.0.0.1,IP:10.96.0.1,IP:$HOST_IP
extendedKeyUsage=serverAuth
EXT
  openssl req -newkey rsa:2048 -nodes -keyout "$PKI/apiserver.key" -out "$PKI/apiserver.csr" -subj "/CN=kube-apiserver" 2>/dev/null
  openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -out "$PKI/apiserver.crt" -days 365 -extfile "$PKI/apiserver.ext" 2>/dev/null
  rm -f "$PKI"/*.csr
  chmod 600 "$PKI"/*.key
fi
printf 'extendedKeyUsage=clientAuth\n' > "$PKI/client.ext"
client_cert admin "/O=system:masters/CN=kubernetes-admin"
# The apiserver's identity towards kubelets (their API authorizes it with a SubjectAccessReview).
client_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
# The service-account token signing key pair (kubeadm's sa.key / sa.pub).
if [ ! -f "$PKI/sa.key" ]; then
  openssl genrsa -traditional -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  chmod 600 "$PKI/sa.key"
fi
# The front proxy (kubeadm's front-proxy-ca and front-proxy-client): the apiserver's identity when it proxies to
# extension apiservers (the metrics API), which trust the X-Remote-* headers of certificates from this CA.
if [ ! -f "$PKI/front-proxy-ca.key" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/front-proxy-ca.key" -out "$PKI/front-proxy-ca.crt" -days 3650 \
    -subj "/CN=front-proxy-ca" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$PKI/front-proxy-client.key" -out "$PKI/front-proxy-client.csr" \
    -subj "/CN=front-proxy-client" 2>/dev/null
  openssl x509 -req -in "$PKI/front-proxy-client.csr" -CA "$PKI/front-proxy-ca.crt" -CAkey "$PKI/front-proxy-ca.key" \
    -CAcreateserial -out "$PKI/front-proxy-client.crt" -days 365 -extfile "$PKI/client.ext" 2>/dev/null
  rm -f "$PKI/front-proxy-client.csr"; chmod 600 "$PKI"/front-proxy-*.key
fi
client_cert controller-manager "/CN=system:kube-controller-manager"
client_cert scheduler "/CN=system:kube-scheduler"

step "writing the kubeconfigs in /etc/kubernetes (admin.conf, controller-manager.conf, scheduler.conf)"
kubeconfig /etc/kubernetes/admin.conf kubernetes-admin "$PKI/admin.crt" "$PKI/admin.key"
kubeconfig /etc/kubernetes/controller-manager.conf system:kube-controller-manager "$PKI/controller-manager.crt" "$PKI/controller-manager.key"
kubeconfig /etc/kubernetes/scheduler.conf system:kube-scheduler "$PKI/scheduler.crt" "$PKI/scheduler.key"
mkdir -p "$HOME/.kube" && cp /etc/kubernetes/admin.conf "$HOME/.kube/config"

ARGS=(--secure-port="$PORT" --advertise-address="$HOST_IP" --service-cluster-ip-range="$SERVICE_CIDR"
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt"
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --enable-bootstrap-token-auth=true
  --allow-privileged=true --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname
  --service-account-issuer=https://kubernetes.default.svc.cluster.local
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key"
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key"
  --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group
  --requestheader-extra-headers-prefix=X-Remote-Extra-
  --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key"
  --data-dir=/var/lib/kube-apiserver)

daemon kube-apiserver "${ARGS[@]}"

step "waiting for /readyz"
for _ in $(seq 1 60); do
  kubectl get --raw /readyz >/dev/null 2>&1 && break
  sleep 0.5
done
kubectl get --raw '/readyz?verbose' | tail -1
kubectl get namespaces

NODE=$(hostname | tr '[:upper:]' '[:lower:]')

step "configuring containerd (/etc/containerd/config.toml)"
mkdir -p /etc/containerd /etc/cni/net.d
if ! grep -q 'kube-rust quickstart' /etc/containerd/config.toml 2>/dev/null; then
  [ -f /etc/containerd/config.toml ] && cp /etc/containerd/config.toml /etc/containerd/config.toml.before-quickstart
  cat > /etc/containerd/config.toml <<CTD
# kube-rust quickstart: CRI for the kubelet (cgroupfs; a process here may not lower oom_score_adj)
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
CTD
fi
if $systemd; then
  systemctl restart containerd
else
  if [ -f /run/kube-containerd.pid ] && kill -0 "$(cat /run/kube-containerd.pid)" 2>/dev/null; then
    kill "$(cat /run/kube-containerd.pid)"; sleep 1
  fi
  nohup containerd --config /etc/containerd/config.toml >>/var/log/containerd.log 2>&1 &
  echo $! > /run/kube-containerd.pid
fi
for _ in $(seq 1 100); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.1; done

step "building and importing the pause and busybox images"
bash deploy/images/build.sh /var/lib/kube-images --import --address /run/containerd/containerd.sock

step "creating the kubelet's certificate, kubeconfig and configuration"
client_cert kubelet-client "/O=system:nodes/CN=system:node:$NODE"
kubeconfig /etc/kubernetes/kubelet.conf "system:node:$NODE" "$PKI/kubelet-client.crt" "$PKI/kubelet-client.key"
mkdir -p /var/lib/kubelet /etc/kubernetes/manifests
cat > /var/lib/kubelet/config.yaml <<KCFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
staticPodPath: /etc/kubernetes/manifests
podCIDR: 10.244.0.0/24
clusterDNS: [10.96.0.10]
clusterDomain: cluster.local
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
KCFG
daemon kubelet --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml \
  --hostname-override="$NODE" --node-ip="$HOST_IP"

daemon kube-controller-manager --kubeconfig=/etc/kubernetes/controller-manager.conf \
  --root-ca-file="$PKI/ca.crt" --cluster-cidr=10.244.0.0/16 --service-cluster-ip-range="$SERVICE_CIDR" \
  --service-account-private-key-file="$PKI/sa.key" --use-service-account-credentials=true \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --controllers='*,bootstrapsigner,tokencleaner' --bind-address=127.0.0.1 --leader-elect=true
daemon kube-scheduler --kubeconfig=/etc/kubernetes/scheduler.conf --bind-address=127.0.0.1 --leader-elect=true

# kube-proxy: its own client certificate (CN=system:kube-proxy, bound to system:node-proxier by the bootstrap
# policy), nftables mode, health on :10256, metrics on 127.0.0.1:10249.
step "creating kube-proxy's certificate, kubeconfig and configuration"
client_cert kube-proxy "/CN=system:kube-proxy"
kubeconfig /etc/kubernetes/kube-proxy.conf system:kube-proxy "$PKI/kube-proxy.crt" "$PKI/kube-proxy.key"
mkdir -p /var/lib/kube-proxy
cat > /var/lib/kube-proxy/config.conf <<KPCFG
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clusterCIDR: 10.244.0.0/16
hostnameOverride: $NODE
clientConnection:
  kubeconfig: /etc/kubernetes/kube-proxy.conf
KPCFG
daemon kube-proxy --config=/var/lib/kube-proxy/config.conf

step "waiting for node $NODE to be Ready"
for _ in $(seq 1 120); do
  kubectl get node "$NODE" >/dev/null 2>&1 && break
  sleep 0.5
done
kubectl wait --for=condition=Ready "node/$NODE" --timeout=60s
kubectl get nodes -o wide
step "waiting for the scheduler and controller-manager to lead"
for _ in $(seq 1 60); do
  kubectl -n kube-system get lease kube-scheduler kube-controller-manager >/dev/null 2>&1 && break
  sleep 0.5
done
kubectl -n kube-system get leases
# Add-ons: cluster DNS (Deployment coredns, Service kube-dns at 10.96.0.10, as kubeadm's CoreDNS add-on) and
# NetworkPolicy enforcement (a DaemonSet programming nftables on each node).
step "deploying cluster DNS and NetworkPolicy enforcement"
kubectl apply -f deploy/cluster-dns.yaml -f deploy/network-policy.yaml
kubectl -n kube-system rollout status deployment/coredns --timeout=90s
kubectl -n kube-system rollout status daemonset/network-policy --timeout=60s
# The metrics API for kubectl top: metrics-server behind the APIService v1beta1.metrics.k8s.io.
step "deploying metrics-server (kubectl top)"
kubectl apply -f deploy/metrics-server.yaml
kubectl -n kube-system rollout status deployment/metrics-server --timeout=90s
echo "The cluster is up: kubectl uses ~/.kube/config (try: kubectl create deployment web --image=busybox:1.36 -- httpd -f -p 8080)."
echo "Stop: bash deploy/stop.sh (add --wipe to remove all state)."
