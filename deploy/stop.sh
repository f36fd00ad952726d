#!/usr/bin/env bash
# Stops what deploy/quickstart.sh started. With --wipe, also removes its state: the embedded store
# (/var/lib/kube-apiserver), certificates and kubeconfigs (/etc/kubernetes), and the log.
set -euo pipefail
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
  echo "stopped and wiped"
else
  echo "stopped (state kept; --wipe removes it)"
fi
