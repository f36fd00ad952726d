#!/usr/bin/env bash
# Scheduler benchmark: release kube-apiserver, kube-scheduler and kube-controller-manager; 1,000 then 5,000 Node
# objects; BENCH_PODS pods (default 5000) each time. Prints a Markdown table for the README.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kube-apiserver --bin kube-apiserver -p kube-scheduler --bin kube-scheduler \
  -p kube-controller-manager --bin kube-controller-manager
cargo bench -p kube-scheduler --bench scheduler "$@"
