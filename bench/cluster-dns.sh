#!/usr/bin/env bash
# cluster-dns benchmark: release kube-apiserver with 10,000 Services and EndpointSlices, release cluster-dns pinned
# to one core, Debian's dnsperf on the other (A queries for every service over UDP on 127.0.0.1). Prints a Markdown
# table for the README: queries per second at saturation, p50/p99 latency at 20,000 qps, RSS.
# Goals: >= 50,000 qps on one core, p99 < 2 ms, RSS < 30 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dnsperf >/dev/null || { echo "dnsperf missing: run deploy/install-deps.sh" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || echo "warning: fewer than 2 cores; cluster-dns and dnsperf will share one" >&2
cargo build --release -p kube-apiserver --bin kube-apiserver -p cluster-dns --bin cluster-dns
cargo bench -p cluster-dns --bench dns "$@"
