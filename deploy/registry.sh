#!/usr/bin/env bash
# The node's local image registry: Debian's docker-registry (unpacked from its package, not installed: the package
# would start a registry on every address), serving 127.0.0.1:5000 only, holding every docker.io and registry.k8s.io
# image deploy/images/build.sh imported into containerd. containerd pulls those two registries' images through it
# (a mirror in /etc/containerd/config.toml), so an image named without a tag (`image: nginx`), whose pull policy
# defaults to Always, is pulled as upstream's docs expect, and no pull leaves this machine for an image built here.
#
# Usage: deploy/registry.sh start     start the registry (under systemd when it is PID 1: kube-registry.service)
#        deploy/registry.sh push      push containerd's docker.io and registry.k8s.io images into it
#        deploy/registry.sh stop [--wipe]   stop it; --wipe also removes its storage
# Environment: REGISTRY_ADDR (127.0.0.1:5000), REGISTRY_DIR (/var/lib/kube-registry), CONTAINERD_ADDRESS.
set -euo pipefail
addr=${REGISTRY_ADDR:-127.0.0.1:5000}
dir=${REGISTRY_DIR:-/var/lib/kube-registry}
bin=/usr/local/lib/kube-rust/docker-registry
pidfile=/run/kube-registry.pid
socket=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
systemd=false; [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ] && systemd=true
# shellcheck source=lib/debs.sh
source "$(dirname "$0")/lib/debs.sh"

# Whether the registry's port takes connections (bash's /dev/tcp: no HTTP client needed).
answering() { (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; }

start() {
  if [ ! -x "$bin" ]; then
    local tmp; tmp=$(mktemp -d)
    unpack_debs "$tmp" docker-registry
    install -D -m 0755 "$tmp/usr/bin/docker-registry" "$bin"
    rm -rf "$tmp"
  fi
  mkdir -p "$dir/data"
  cat > "$dir/config.yml" <<EOF
# deploy/registry.sh: the node's local registry, loopback only.
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $addr
EOF
  answering && return 0
  if $systemd; then
    cat > /etc/systemd/system/kube-registry.service <<EOF
[Unit]
Description=The node's local image registry (deploy/registry.sh)
Before=containerd.service

[Service]
ExecStart=$bin serve $dir/config.yml
Restart=always

[Install]
WantedBy=multi-user.target
EOF
    systemctl daemon-reload
    systemctl enable --now kube-registry
  else
    nohup "$bin" serve "$dir/config.yml" >>/var/log/kube-registry.log 2>&1 &
    echo $! > "$pidfile"
  fi
  for _ in $(seq 1 100); do answering && return 0; sleep 0.1; done
  echo "registry: nothing answers on http://$addr/v2/ (see /var/log/kube-registry.log)" >&2
  exit 1
}

push() {
  local ref copy n=0
  for ref in $(ctr -a "$socket" -n k8s.io images ls -q | grep -E '^(docker\.io|registry\.k8s\.io)/'); do
    copy="$addr/${ref#*/}"
    ctr -a "$socket" -n k8s.io images tag --force "$ref" "$copy" >/dev/null
    ctr -a "$socket" -n k8s.io images push --plain-http "$copy" >/dev/null
    # The copy's name only served the push: the node lists the images under their own names.
    ctr -a "$socket" -n k8s.io images rm "$copy" >/dev/null
    n=$((n + 1))
  done
  echo "registry: $n images pushed to $addr"
}

stop() {
  if $systemd && [ -f /etc/systemd/system/kube-registry.service ]; then
    systemctl disable --now kube-registry || true
    [ "${1:-}" = --wipe ] && rm -f /etc/systemd/system/kube-registry.service && systemctl daemon-reload
  elif [ -f "$pidfile" ]; then
    kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  fi
  if [ "${1:-}" = --wipe ]; then
    rm -rf "$dir" /var/log/kube-registry.log
  fi
}

case "${1:-}" in
  start) start ;;
  push) push ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start | push | stop [--wipe]" >&2; exit 2 ;;
esac
