#!/usr/bin/env bash
# Stops what deploy/quickstart.sh started. A kubeadm cluster (the quick start's): the kubelet, then the pods it ran
# (the static-pod control plane included) and containerd when the quick start started it; with --wipe,
# `kubeadm reset -f` first (static pods, /etc/kubernetes, /var/lib/kubelet, the etcd data), then kube-proxy's and
# network-policy's rules, the images, the pod network's bridge and config, the quick start's containerd config and
# the logs. Daemons started by hand or by the earlier quick start (pid files in /run, units in /etc/systemd/system:
# kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy) are stopped and wiped the same way.
set -euo pipefail
stop_pid() {
  local f=$1
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}
systemd=false; [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ] && systemd=true
# The scheduler and controller-manager first, so nothing recreates the pods being removed.
for d in kube-scheduler kube-controller-manager kube-proxy; do
  if $systemd && systemctl list-unit-files "$d.service" >/dev/null 2>&1; then
    systemctl disable --now "$d" || true
  else
    stop_pid "/run/$d.pid"
  fi
done
if [ "${1:-}" = "--wipe" ] && [ -f /etc/kubernetes/admin.conf ] && command -v kubeadm >/dev/null \
  && [ -f /var/lib/kubelet/kubeadm-flags.env ]; then
  # A kubeadm node: kubeadm reset stops the kubelet, removes the static pods' manifests and containers, and its files.
  kubeadm reset -f --cri-socket=unix:///run/containerd/containerd.sock || true
fi
if [ "${1:-}" = "--wipe" ] && [ -f /etc/kubernetes/admin.conf ]; then
  # Let the kubelet tear the pods down through CRI (sandboxes, mounts, network) before it stops.
  kubectl --kubeconfig /etc/kubernetes/admin.conf delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do
    [ -z "$(ctr -n k8s.io tasks ls -q 2>/dev/null)" ] && break
    sleep 0.25
  done
fi
if $systemd && systemctl list-unit-files kubelet.service >/dev/null 2>&1; then
  systemctl disable --now kubelet || true
else
  # A kubelet that kubeadm started through /usr/libexec/kubeadm/kubelet-run.sh has a supervisor restarting it.
  stop_pid /run/kubelet-supervisor.pid
  stop_pid /run/kubelet.pid
fi
# The pods' containers.
if [ -S /run/containerd/containerd.sock ]; then
  for t in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  sleep 0.5
  for c in $(ctr -n k8s.io containers ls -q 2>/dev/null); do
    ctr -n k8s.io tasks rm -f "$c" >/dev/null 2>&1 || true
    ctr -n k8s.io containers rm "$c" >/dev/null 2>&1 || true
  done
fi
stop_pid /run/kube-containerd.pid
# The pods' network namespaces: the containers above went without a CRI sandbox teardown, so containerd's `cni-*`
# namespaces, with their ends of the bridge's veth pairs, are still there.
for n in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do ip netns del "$n" 2>/dev/null || true; done
bash "$(dirname "$0")/registry.sh" stop ${1:+"$1"} || true
if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ] && systemctl list-unit-files kube-apiserver.service >/dev/null 2>&1; then
  systemctl disable --now kube-apiserver || true
elif [ -f /run/kube-apiserver.pid ]; then
  pid=$(cat /run/kube-apiserver.pid)
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f /run/kube-apiserver.pid
fi
if [ "${1:-}" = "--wipe" ]; then
  rm -rf /var/lib/kube-apiserver /etc/kubernetes /var/log/kube-apiserver.log /etc/systemd/system/kube-apiserver.service /etc/default/kube-apiserver
  rm -rf /var/lib/kubelet /var/log/pods /var/log/kubelet.log /etc/systemd/system/kubelet.service /etc/default/kubelet
  # kube-proxy leaves its rules in place on SIGTERM (as upstream); --cleanup removes them in every mode, and
  # network-policy --cleanup its nftables table.
  command -v kube-proxy >/dev/null && kube-proxy --cleanup >/dev/null 2>&1 || true
  command -v network-policy >/dev/null && network-policy --cleanup >/dev/null 2>&1 || true
  rm -rf /var/lib/kube-proxy
  for d in kube-scheduler kube-controller-manager kube-proxy; do
    rm -f "/var/log/$d.log" "/etc/systemd/system/$d.service" "/etc/default/$d"
  done
  rm -rf /var/lib/kube-images /etc/cni/net.d/10-kubelet-bridge.conflist /var/log/containerd.log
  ip link del cni0 2>/dev/null || true
  # The kubelet's cgroup tree (kubepods and its QoS and pod cgroups), empty once the containers are gone.
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] && { find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; }
  done
  for m in $(awk '$2 ~ "^/run/containerd/io.containerd.grpc.v1.cri/" {print $2}' /proc/mounts); do umount -l "$m" || true; done
  if grep -q 'kube-rust quickstart' /etc/containerd/config.toml 2>/dev/null; then
    if [ -f /etc/containerd/config.toml.before-quickstart ]; then
      mv /etc/containerd/config.toml.before-quickstart /etc/containerd/config.toml
    else
      rm -f /etc/containerd/config.toml
    fi
  fi
  echo "stopped and wiped"
else
  echo "stopped (state kept; --wipe removes it)"
fi
