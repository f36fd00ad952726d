#!/usr/bin/env bash
# Protobuf versus JSON on the apiserver, same run: server-side encoding of a 5,000-pod LIST and 10,000 pod watch
# events, and pod creates per second with protobuf and JSON bodies against the release binary. Prints a Markdown
# table; the README records its output. BENCH_PODS (default 5000) sets the creates per encoding; BENCH_ONLY=encoding
# runs the encoding and storage tables alone, BENCH_ONLY=creates the creates alone.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kube-apiserver --bin kube-apiserver
cargo bench -p kube-apiserver --bench protobuf "$@"
