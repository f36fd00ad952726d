#!/usr/bin/env bash
# Installs this project the way upstream's kubeadm, kubelet and kubectl packages do (run as root):
#   /usr/bin/kubeadm, /usr/bin/kubelet, and the other components (kube-apiserver, kube-controller-manager,
#     kube-scheduler, kube-proxy, cluster-dns, network-policy), built in release mode;
#   /usr/lib/systemd/system/kubelet.service                   the kubelet package's unit (deploy/kubelet/kubelet.service)
#   /usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf the kubeadm package's drop-in (deploy/10-kubeadm.conf)
#   /usr/libexec/kubeadm/kubelet-run.sh                       the same without systemd as PID 1 (deploy/kubelet-run.sh):
#     kubeadm runs `kubelet-run.sh restart|stop` there instead of systemctl
#   /etc/kubernetes/manifests, /var/lib/kubelet               as the kubelet package creates them
# kubectl is left alone (/usr/bin/kubectl, Debian's). Under systemd the unit is enabled, as the package's
# post-install does; the kubelet then waits (restarting every 10 s) until `kubeadm init` or `kubeadm join` writes its
# configuration. Next: containerd and the images (deploy/install-deps.sh, deploy/images/build.sh --import), then
# `kubeadm init`.
# Usage: deploy/install.sh [--no-build]
#   --no-build   install what target/release holds already
#   DESTDIR=dir  install under dir instead of / (packaging, tests); nothing is enabled then
#   CARGO=...    the cargo command (default cargo)
set -euo pipefail
cd "$(dirname "$0")/.."
DESTDIR=${DESTDIR:-}
CARGO=${CARGO:-cargo}
BINARIES=(kubeadm kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy cluster-dns network-policy)
UNIT_DIR=/usr/lib/systemd/system

if [ "${1:-}" != "--no-build" ]; then
  echo "==> building (release): ${BINARIES[*]}"
  pkgs=()
  for b in "${BINARIES[@]}"; do pkgs+=(-p "$b"); done
  # shellcheck disable=SC2086
  $CARGO build --release --locked "${pkgs[@]}"
fi

echo "==> installing into ${DESTDIR:-/}"
for b in "${BINARIES[@]}"; do
  install -D -m 0755 "target/release/$b" "$DESTDIR/usr/bin/$b"
done
install -D -m 0644 deploy/kubelet/kubelet.service "$DESTDIR$UNIT_DIR/kubelet.service"
install -D -m 0644 deploy/10-kubeadm.conf "$DESTDIR$UNIT_DIR/kubelet.service.d/10-kubeadm.conf"
install -D -m 0755 deploy/kubelet-run.sh "$DESTDIR/usr/libexec/kubeadm/kubelet-run.sh"
install -d -m 0755 "$DESTDIR/etc/kubernetes/manifests" "$DESTDIR/var/lib/kubelet"
[ -x "$DESTDIR/usr/bin/kubectl" ] || [ -x /usr/bin/kubectl ] || echo "note: no /usr/bin/kubectl; install Debian's kubectl package"

if [ -z "$DESTDIR" ] && [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; then
  systemctl daemon-reload
  systemctl enable kubelet
  echo "==> kubelet.service enabled (it starts for good once kubeadm init or join has configured it)"
else
  echo "==> no systemd: kubeadm starts the kubelet with /usr/libexec/kubeadm/kubelet-run.sh"
fi
for b in "${BINARIES[@]}"; do
  if [ -z "$DESTDIR" ] && [ -x "/usr/local/bin/$b" ]; then
    echo "note: /usr/local/bin/$b (from deploy/quickstart.sh) comes first in PATH; remove it to use /usr/bin/$b"
  fi
done
echo "==> installed; next: kubeadm init"
