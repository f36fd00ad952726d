#!/usr/bin/env bash
# Storage benchmark: the embedded SQLite store and etcd (Debian's etcd-server, started on a loopback port in a temp
# dir) measured side by side in one run. Prints a Markdown table; the README records its output.
#   BENCH_WRITES (default 40000) and BENCH_WATCHERS (default 1000) scale the run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
cargo bench -p kube-apiserver --bench storage "$@"
