#!/usr/bin/env bash
# The project's test command (README): installs what the tests need, runs every test in the workspace (the storage
# conformance suite runs against the embedded store and a real etcd), then runs the kubectl end-to-end suite again
# with kube-apiserver on etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
# A clean clone builds once: incremental state would only double the disk the build takes.
export CARGO_INCREMENTAL=0
echo "==> cargo test --workspace"
cargo test --workspace --locked

echo "==> kubectl end-to-end suite against kube-apiserver on etcd"
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
peer=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
etcd --name e2e --data-dir "$dir/data" --listen-client-urls "http://127.0.0.1:$port" \
  --advertise-client-urls "http://127.0.0.1:$port" --listen-peer-urls "http://127.0.0.1:$peer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "e2e=http://127.0.0.1:$peer" \
  --logger zap --log-level error >"$dir/etcd.log" 2>&1 &
etcd_pid=$!
trap 'kill $etcd_pid 2>/dev/null || true; wait $etcd_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
# --workspace keeps the features of the first run, so nothing is rebuilt.
KUBE_TEST_ETCD="http://127.0.0.1:$port" cargo test --workspace --locked --test kubectl

echo "==> kubeadm end to end: init, a Service by name from a pod, token, certs, reset"
bash deploy/kubeadm-e2e.sh target/debug

echo "==> kubeadm join end to end: a worker in namespaces joins, Services across the two nodes, reset on both"
bash deploy/kubeadm-join-e2e.sh target/debug

echo "==> kubeadm HA end to end: three stacked control planes behind an endpoint, the leader killed"
bash deploy/kubeadm-ha-e2e.sh target/debug
