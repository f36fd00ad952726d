#!/usr/bin/env bash
# Quick start: installs what is needed, builds in release mode, creates a CA and certificates under
# /etc/kubernetes/pki, writes the admin kubeconfig (/etc/kubernetes/admin.conf, copied to ~/.kube/config) and starts
# kube-apiserver on the embedded store: under systemd when it is PID 1, otherwise as a background process.
# Stop it with deploy/stop.sh; wipe everything with deploy/stop.sh --wipe.
# Today this brings up the control plane's API only: the kubelet, scheduler and controller-manager come next.
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
echo "kube-apiserver is up: kubectl uses ~/.kube/config. Stop: bash deploy/stop.sh (add --wipe to remove all state)."
