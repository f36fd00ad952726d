#!/usr/bin/env bash
# Kubelet benchmark (root): the release kube-apiserver and kubelet binaries with a private containerd in a temp dir,
# then the kubelet's hollow-node mode (BENCH_HOLLOW nodes, default 1000). Prints a Markdown table for the README.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v containerd >/dev/null || { echo "containerd not found: bash deploy/install-deps.sh" >&2; exit 1; }
cargo build --release -p kube-apiserver --bin kube-apiserver -p kubelet --bin kubelet
cargo bench -p kubelet --bench kubelet "$@"
