#!/usr/bin/env bash
# Admission webhook benchmark: ConfigMap create latency p50/p99 on an in-process apiserver with no webhook
# configuration, with one that matches nothing, and with one validating webhook (in-process HTTPS on loopback);
# prints a Markdown table and the p99 the webhook adds (issue 16: under 3 ms). BENCH_CREATES (default 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p kube-apiserver --bench admission_webhook "$@"
