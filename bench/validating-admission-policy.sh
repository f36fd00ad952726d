#!/usr/bin/env bash
# ValidatingAdmissionPolicy benchmark: ConfigMap create latency p50/p99 on an in-process apiserver with no policy,
# with a bound policy for other resources, with a bound policy of three validations and a variable, and with the
# same reading a ConfigMap param; prints a Markdown table and the p99 each adds. BENCH_CREATES (default 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p kube-apiserver --bench validating_admission_policy "$@"
