#!/usr/bin/env bash
# Quick start: a one-node cluster made the way upstream's users make one, with `kubeadm init`.
#   1. installs what is needed (deploy/install-deps.sh: containerd, runc, the CNI plugins, iptables, nftables, ...);
#   2. builds in release mode and installs the binaries, the kubelet unit and kubeadm's drop-in as the kubeadm and
#      kubelet packages do (deploy/install.sh: /usr/bin/kubeadm, /usr/bin/kubelet, ...);
#   3. configures and starts containerd (CRI, cgroupfs, the bridge CNI plugins), then builds every image offline
#      (deploy/images/build.sh --control-plane), imports it and pushes it into the node's local registry
#      (deploy/registry.sh, 127.0.0.1:5000), which containerd pulls docker.io and registry.k8s.io images through;
#   4. IPv4 packet forwarding on (/etc/sysctl.d/k8s.conf), then `kubeadm init`: certificates in /etc/kubernetes/pki,
#      kubeconfigs, the static-pod control plane on the
#      embedded store, the kubelet (under systemd when it is PID 1, otherwise through
#      /usr/libexec/kubeadm/kubelet-run.sh), bootstrap tokens, and the kube-proxy and CoreDNS add-ons;
#   5. as upstream's docs say for a one-machine cluster: admin.conf copied to ~/.kube/config and the control-plane
#      taint removed so workloads run here; then the add-ons kubeadm does not install: NetworkPolicy enforcement
#      (deploy/network-policy.yaml) and metrics-server (deploy/metrics-server.yaml, for kubectl top).
# Run again on a machine it already set up, it starts what is stopped (containerd, the kubelet, hence the control
# plane) instead of initializing a second time. Stop with deploy/stop.sh; remove everything with
# deploy/stop.sh --wipe (kubeadm reset and the rest).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "==> $*"; }
POD_CIDR=${POD_CIDR:-10.244.0.0/16}
SERVICE_CIDR=${SERVICE_CIDR:-10.96.0.0/12}
CRI_SOCKET=unix:///run/containerd/containerd.sock
systemd=false; [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ] && systemd=true

step "installing dependencies"
bash deploy/install-deps.sh

step "building (release) and installing the binaries (deploy/install.sh)"
cargo build --release --workspace --locked
bash deploy/install.sh --no-build

step "configuring containerd (/etc/containerd/config.toml)"
mkdir -p /etc/containerd /etc/cni/net.d
restart_containerd=false
if ! grep -q 'kube-rust quickstart 2' /etc/containerd/config.toml 2>/dev/null; then
  if [ -f /etc/containerd/config.toml ] && ! grep -q 'kube-rust quickstart' /etc/containerd/config.toml; then
    cp /etc/containerd/config.toml /etc/containerd/config.toml.before-quickstart
  fi
  cat > /etc/containerd/config.toml <<CTD
# kube-rust quickstart 2: CRI for the kubelet (cgroupfs; a process here may not lower oom_score_adj), docker.io and
# registry.k8s.io pulled through the node's local registry (deploy/registry.sh) first
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
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["http://127.0.0.1:5000"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."registry.k8s.io"]
    endpoint = ["http://127.0.0.1:5000"]
CTD
  restart_containerd=true
fi
containerd_running() { [ -f /run/kube-containerd.pid ] && kill -0 "$(cat /run/kube-containerd.pid)" 2>/dev/null; }
if $systemd; then
  systemctl restart containerd
else
  # A containerd of an earlier quick start reads the new config on a restart (its containers keep running).
  if $restart_containerd && containerd_running; then
    kill -TERM "$(cat /run/kube-containerd.pid)"
    for _ in $(seq 1 100); do containerd_running || break; sleep 0.1; done
  fi
  if ! containerd_running; then
    nohup containerd --config /etc/containerd/config.toml >>/var/log/containerd.log 2>&1 &
    echo $! > /run/kube-containerd.pid
  fi
fi
for _ in $(seq 1 100); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.1; done

step "building and importing the images (what kubeadm config images list names, and the add-ons')"
BIN_DIR=target/release bash deploy/images/build.sh /var/lib/kube-images --import --control-plane \
  --address /run/containerd/containerd.sock

step "the node's local registry on 127.0.0.1:5000 (deploy/registry.sh), holding those images for pulls"
bash deploy/registry.sh start
bash deploy/registry.sh push

step "enabling IPv4 packet forwarding (/etc/sysctl.d/k8s.conf, as kubeadm's installation guide does)"
echo "net.ipv4.ip_forward = 1" > /etc/sysctl.d/k8s.conf
sysctl -qw net.ipv4.ip_forward=1

export KUBECONFIG=/etc/kubernetes/admin.conf
if [ -f /etc/kubernetes/admin.conf ] && [ -f /var/lib/kubelet/config.yaml ]; then
  step "already initialized: starting the kubelet (it starts the static-pod control plane)"
  if $systemd; then systemctl restart kubelet; else /usr/libexec/kubeadm/kubelet-run.sh restart; fi
else
  step "kubeadm init"
  kubeadm init --pod-network-cidr="$POD_CIDR" --service-cidr="$SERVICE_CIDR" --cri-socket="$CRI_SOCKET"
fi
mkdir -p "$HOME/.kube" && cp /etc/kubernetes/admin.conf "$HOME/.kube/config"

step "waiting for the apiserver and the node"
for _ in $(seq 1 120); do kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 0.5; done
NODE=$(hostname | tr '[:upper:]' '[:lower:]')
kubectl wait --for=condition=Ready "node/$NODE" --timeout=120s
# One machine: let workloads run on the control-plane node (upstream's "Control plane node isolation").
kubectl taint nodes --all node-role.kubernetes.io/control-plane- >/dev/null 2>&1 || true

step "add-ons: NetworkPolicy enforcement and metrics-server (kubeadm installed kube-proxy and CoreDNS)"
kubectl apply -f deploy/network-policy.yaml -f deploy/metrics-server.yaml
# The policy agent runs in the host's network, where a route for the Service range (e.g. a blackhole that keeps
# test traffic on this machine) is chosen before kube-proxy's DNAT: it dials the apiserver itself, as Calico's
# `kubernetes-services-endpoint` does.
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
server=${server#https://}
kubectl -n kube-system set env daemonset/network-policy \
  KUBERNETES_SERVICE_HOST="${server%:*}" KUBERNETES_SERVICE_PORT="${server##*:}" >/dev/null
kubectl -n kube-system rollout status daemonset/kube-proxy --timeout=120s
kubectl -n kube-system rollout status deployment/coredns --timeout=120s
kubectl -n kube-system rollout status daemonset/network-policy --timeout=120s
kubectl -n kube-system rollout status deployment/metrics-server --timeout=120s
kubectl get nodes -o wide
kubectl get pods -A
echo "The cluster is up: kubectl uses ~/.kube/config (try: kubectl create deployment web --image=busybox:1.36 -- httpd -f -p 8080)."
echo "Join another machine: kubeadm token create --print-join-command. Stop: bash deploy/stop.sh (--wipe removes everything)."
