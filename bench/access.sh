#!/usr/bin/env bash
# Access-control benchmark: pod creates with Node,RBAC (5,000 RoleBindings, 1,000 ClusterRoles) against AlwaysAllow
# on the release binary, and service-account token authentication against a static token, in the same run; plus
# the RBAC authorizer's decision latency (benches/rbac.rs). Prints Markdown tables; the README records them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kube-apiserver --bin kube-apiserver
cargo bench -p kube-apiserver --bench access "$@"
