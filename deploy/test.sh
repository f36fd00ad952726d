#!/usr/bin/env bash
# The project's test command (README): installs what the tests need, then runs every test in the workspace,
# including the storage conformance suite against the embedded store and a real etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
echo "==> cargo test --workspace"
cargo test --workspace --locked
