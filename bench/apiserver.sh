#!/usr/bin/env bash
# Apiserver benchmark: the release kube-apiserver binary over HTTPS, on the embedded store and on etcd (started on a
# loopback port in a temp dir) in the same run. Prints a Markdown table; the README records its output.
#   BENCH_PODS (default 10000) and BENCH_WATCHERS (default 1000) scale the run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
cargo build --release -p kube-apiserver --bin kube-apiserver
cargo bench -p kube-apiserver --bench apiserver "$@"
