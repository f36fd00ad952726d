#!/usr/bin/env bash
# Field manager benchmark (issue 16 steps 5-6): ConfigMap creates with and without managedFields recording, and
# server-side apply against a merge patch, in-process on the embedded store. Prints a Markdown table.
#   BENCH_OBJECTS (default 4000) per run and BENCH_ROUNDS (default 3) scale the run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p kube-apiserver --bench fieldmanager "$@"
