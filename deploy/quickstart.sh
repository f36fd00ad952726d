#!/usr/bin/env bash
# Quick start: installs what is needed and builds every component in release mode.
# Today only the storage layer exists (see README "What works"); bringing up a cluster comes with the apiserver,
# kubelet, scheduler and controller-manager.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
echo "==> cargo build --release --workspace"
cargo build --release --workspace --locked
echo "==> built: $(ls target/release | grep -E '^kube' | tr '\n' ' ')"
