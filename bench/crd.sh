#!/usr/bin/env bash
# Custom resource benchmark: creates/s of a custom resource with a 20-field schema and one CEL validation rule (and
# without the rule) against ConfigMap creates, 32 clients on the release binary, in the same run. Prints a Markdown
# table and the ratio (issue 16: CR + rule >= 80% of ConfigMaps); the README records its output.
#   BENCH_OBJECTS (default 5000) per run and BENCH_ROUNDS (default 2) scale the run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kube-apiserver --bin kube-apiserver
cargo bench -p kube-apiserver --bench crd "$@"
