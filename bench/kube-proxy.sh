#!/usr/bin/env bash
# kube-proxy at scale (needs root): 10,000 Services x 10 endpoints in an in-process apiserver, the release
# kube-proxy binary in a network namespace of its own, in nftables mode and then iptables mode (the baseline).
# Prints, per mode: the first full sync time, the network programming latency of single endpoint changes
# (EndpointSlice write -> rule in the kernel; p50, p99, max), and kube-proxy's RSS.
# Knobs: KPX_SERVICES, KPX_ENDPOINTS, KPX_CHANGES (endpoint changes measured, 1.1 s apart), KPX_MODES.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kube-proxy
KPX_BINARY="$PWD/target/release/kube-proxy" exec cargo bench -p kube-proxy --bench proxier
