#!/bin/sh
# kubelet-run.sh start|stop|restart|status: the kubelet on a kubeadm node without systemd as PID 1. It does what
# kubelet.service with its drop-in 10-kubeadm.conf does: before each start it reads /var/lib/kubelet/kubeadm-flags.env
# (KUBELET_KUBEADM_ARGS, written by kubeadm) and /etc/default/kubelet (KUBELET_EXTRA_ARGS, the user's), runs
#   /usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
# in the background (pid in /run/kubelet.pid, output appended to /var/log/kubelet.log), and restarts it 10 s after
# it exits (the unit's Restart=always, RestartSec=10) from a small supervisor (pid in /run/kubelet-supervisor.pid).
# `stop` ends the supervisor, then the kubelet (SIGTERM, SIGKILL after 15 s).
# deploy/install.sh installs it as /usr/libexec/kubeadm/kubelet-run.sh, where kubeadm finds it: `kubeadm init`,
# `join`, `reset` and `upgrade` run `kubelet-run.sh restart` and `kubelet-run.sh stop` when systemd is not PID 1 and
# KUBEADM_KUBELET_START_COMMAND / KUBEADM_KUBELET_STOP_COMMAND are unset.
# For tests, KUBELET (the binary) and KUBELET_RUN_ROOT (a directory every path above is under) may be set.
set -u
ROOT=${KUBELET_RUN_ROOT:-}
KUBELET=${KUBELET:-/usr/bin/kubelet}
PID_FILE=$ROOT/run/kubelet.pid
SUPERVISOR_PID_FILE=$ROOT/run/kubelet-supervisor.pid
LOG=$ROOT/var/log/kubelet.log
FLAGS_ENV=$ROOT/var/lib/kubelet/kubeadm-flags.env
DEFAULTS=$ROOT/etc/default/kubelet
RESTART_SEC=${KUBELET_RESTART_SEC:-10}

# alive <pid file> <word>: the pid in the file is a running process whose command line has <word> (a stale
# file's pid, reused by another process, is never signalled).
alive() {
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && running "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# running <pid>: the process exists and is not a zombie waiting for its (new) parent to reap it.
running() {
  kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]
}

stop_one() {
  if alive "$1" "$2"; then
    kill -TERM "$pid" 2>/dev/null
    i=0
    while running "$pid" && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$1"
}

supervise() {
  echo $$ >"$SUPERVISOR_PID_FILE"
  trap 'exit 0' TERM INT
  while :; do
    KUBELET_KUBECONFIG_ARGS="--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
    KUBELET_CONFIG_ARGS="--config=/var/lib/kubelet/config.yaml"
    KUBELET_KUBEADM_ARGS=
    KUBELET_EXTRA_ARGS=
    # shellcheck disable=SC1090
    [ -r "$FLAGS_ENV" ] && . "$FLAGS_ENV"
    # shellcheck disable=SC1090
    [ -r "$DEFAULTS" ] && . "$DEFAULTS"
    echo "kubelet-run: starting $KUBELET $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS"
    # shellcheck disable=SC2086
    "$KUBELET" $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS &
    echo $! >"$PID_FILE"
    wait $!
    echo "kubelet-run: the kubelet exited with status $?; restarting in ${RESTART_SEC}s"
    sleep "$RESTART_SEC" &
    wait $!
  done
}

start() {
  if alive "$SUPERVISOR_PID_FILE" kubelet-run; then
    return 0
  fi
  mkdir -p "$(dirname "$PID_FILE")" "$(dirname "$LOG")"
  rm -f "$PID_FILE"
  # Detached (own session, no terminal, no inherited pipes), so the caller returns at once.
  setsid sh "$0" supervise </dev/null >>"$LOG" 2>&1 &
  i=0
  while [ ! -s "$PID_FILE" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  [ -s "$PID_FILE" ] || { echo "kubelet-run: the kubelet did not start; see $LOG" >&2; return 1; }
}

stop() {
  stop_one "$SUPERVISOR_PID_FILE" kubelet-run
  stop_one "$PID_FILE" kubelet
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status)
    if alive "$PID_FILE" kubelet; then echo "kubelet is running (pid $pid)"; else echo "kubelet is not running"; exit 3; fi ;;
  supervise) supervise ;;
  *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
