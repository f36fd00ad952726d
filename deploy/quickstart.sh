#!/usr/bin/env bash
# Quick start: installs what is needed, builds in release mode, creates a CA and certificates under
# /etc/kubernetes/pki, writes the admin kubeconfig (/etc/kubernetes/admin.conf, copied to ~/.kube/config) and starts
# kube-apiserver on the embedded store: under systemd when it is PID 1, otherwise as a background process.
# Then it configures and starts containerd, builds and imports the pause and busybox images, and starts the kubelet,
# which registers this machine as a Ready node (pod CIDR 10.244.0.0/24, bridge networking).
# Stop it with deploy/stop.sh; wipe everything with deploy/stop.sh --wipe.
# The scheduler and controller-manager come next: until then, pods must name their node (spec.nodeName).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "==> $*"; }

step "installing dependencies"
bash deploy/install-deps.sh
command -v openssl >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }

step "building (release)"
cargo build --release --workspace --locked
install -m 0755 target/release/kube-apiserver /usr/local/bin/kube-apiserver

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
  printf 'extendedKeyUsage=clientAuth\n' > "$PKI/client.ext"
  openssl req -newkey rsa:2048 -nodes -keyout "$PKI/admin.key" -out "$PKI/admin.csr" \
    -subj "/O=system:masters/CN=kubernetes-admin" 2>/dev/null
  openssl x509 -req -in "$PKI/admin.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -out "$PKI/admin.crt" -days 365 -extfile "$PKI/client.ext" 2>/dev/null
  rm -f "$PKI"/*.csr
  chmod 600 "$PKI"/*.key
fi

step "writing /etc/kubernetes/admin.conf"
b64() { base64 -w0 < "$1"; }
cat > /etc/kubernetes/admin.conf <<CONF
apiVersion: v1
kind: Config
clusters:
- name: kubernetes
  cluster:
    server: https://127.0.0.1:$PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: kubernetes-admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: kubernetes-admin@kubernetes
  context: {cluster: kubernetes, user: kubernetes-admin}
current-context: kubernetes-admin@kubernetes
CONF
chmod 600 /etc/kubernetes/admin.conf
mkdir -p "$HOME/.kube" && cp /etc/kubernetes/admin.conf "$HOME/.kube/config"

ARGS=(--secure-port="$PORT" --advertise-address="$HOST_IP" --service-cluster-ip-range="$SERVICE_CIDR"
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt"
  --data-dir=/var/lib/kube-apiserver)

if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; then
  step "starting kube-apiserver under systemd"
  install -m 0644 deploy/kube-apiserver.service /etc/systemd/system/kube-apiserver.service
  mkdir -p /etc/default && echo "KUBE_APISERVER_ARGS=\"${ARGS[*]}\"" > /etc/default/kube-apiserver
  systemctl daemon-reload && systemctl enable --now kube-apiserver
else
  step "starting kube-apiserver in the background (no systemd here)"
  if [ -f /run/kube-apiserver.pid ] && kill -0 "$(cat /run/kube-apiserver.pid)" 2>/dev/null; then
    kill "$(cat /run/kube-apiserver.pid)"; sleep 1
  fi
  nohup /usr/local/bin/kube-apiserver "${ARGS[@]}" >>/var/log/kube-apiserver.log 2>&1 &
  echo $! > /run/kube-apiserver.pid
fi

step "waiting for /readyz"
for _ in $(seq 1 60); do
  kubectl get --raw /readyz >/dev/null 2>&1 && break
  sleep 0.5
done
kubectl get --raw '/readyz?verbose' | tail -1
kubectl get namespaces

NODE=$(hostname | tr '[:upper:]' '[:lower:]')
systemd=false; [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ] && systemd=true

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
if [ ! -f "$PKI/kubelet-client.crt" ]; then
  openssl req -newkey rsa:2048 -nodes -keyout "$PKI/kubelet-client.key" -out "$PKI/kubelet-client.csr" \
    -subj "/O=system:nodes/CN=system:node:$NODE" 2>/dev/null
  openssl x509 -req -in "$PKI/kubelet-client.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -out "$PKI/kubelet-client.crt" -days 365 -extfile "$PKI/client.ext" 2>/dev/null
  rm -f "$PKI/kubelet-client.csr"; chmod 600 "$PKI/kubelet-client.key"
fi
sed -e "s|client-certificate-data: .*|client-certificate-data: $(b64 "$PKI/kubelet-client.crt")|" \
    -e "s|client-key-data: .*|client-key-data: $(b64 "$PKI/kubelet-client.key")|" \
    -e "s|kubernetes-admin|system:node:$NODE|g" /etc/kubernetes/admin.conf > /etc/kubernetes/kubelet.conf
chmod 600 /etc/kubernetes/kubelet.conf
mkdir -p /var/lib/kubelet /etc/kubernetes/manifests
cat > /var/lib/kubelet/config.yaml <<KCFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
staticPodPath: /etc/kubernetes/manifests
podCIDR: 10.244.0.0/24
KCFG
install -m 0755 target/release/kubelet /usr/local/bin/kubelet
KUBELET_ARGS=(--hostname-override="$NODE" --node-ip="$HOST_IP")
if $systemd; then
  step "starting the kubelet under systemd"
  install -m 0644 deploy/kubelet.service /etc/systemd/system/kubelet.service
  echo "KUBELET_ARGS=\"${KUBELET_ARGS[*]}\"" > /etc/default/kubelet
  systemctl daemon-reload && systemctl enable --now kubelet
else
  step "starting the kubelet in the background"
  if [ -f /run/kubelet.pid ] && kill -0 "$(cat /run/kubelet.pid)" 2>/dev/null; then
    kill "$(cat /run/kubelet.pid)"; sleep 1
  fi
  nohup /usr/local/bin/kubelet --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml \
    "${KUBELET_ARGS[@]}" >>/var/log/kubelet.log 2>&1 &
  echo $! > /run/kubelet.pid
fi

step "waiting for node $NODE to be Ready"
for _ in $(seq 1 120); do
  kubectl get node "$NODE" >/dev/null 2>&1 && break
  sleep 0.5
done
kubectl wait --for=condition=Ready "node/$NODE" --timeout=60s
kubectl get nodes -o wide
echo "The cluster is up: kubectl uses ~/.kube/config. Pods need spec.nodeName: $NODE until the scheduler lands."
echo "Stop: bash deploy/stop.sh (add --wipe to remove all state)."
