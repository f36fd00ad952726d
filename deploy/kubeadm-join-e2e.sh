#!/usr/bin/env bash
# End to end: a two-node cluster made with kubeadm on one machine. `kubeadm init` makes the host the control-plane
# node (as deploy/kubeadm-e2e.sh does, advertising 10.253.254.1); a worker node is simulated in namespaces of its own:
# a network namespace (kj-worker) joined to the host by a veth pair (kj-h 10.253.254.1 on the host, eth0
# 10.253.254.2 in the worker), a mount namespace giving it its own /etc/kubernetes, /var/lib/kubelet, /run
# (containerd's socket and state, kubelet-run.sh's pid files), /var/log, /etc/cni/net.d, /var/lib/cni, /etc/hosts and
# /etc/default (its KUBELET_EXTRA_ARGS), and a UTS namespace with the hostname kj-worker. The worker runs its own
# containerd (root under /var/lib/kj-worker) and its own kubelet (--cgroup-root=/kj-worker, so its pods' cgroups
# are apart from the host's /kubepods), and joins with the exact command `kubeadm token create
# --print-join-command` prints. Checked: the kubelet's TLS bootstrap (a CSR approved and signed by the
# controller-manager), node Ready (the time from `kubeadm join` to Ready is printed), a podCIDR of its own, its
# InternalIP and serving certificate, kube-proxy (DaemonSet) running on it with its own nftables rules, each
# kubelet's pods in its own cgroup tree and the cgroup removed with the pod. Pod networking between the nodes is the
# "host-gw" setup a simple network add-on makes: each node's podCIDR routed to it through the veth. A Deployment
# pinned to the worker behind a Service answers by name from a busybox pod on the host, and one on the host answers a
# pod on the worker (cluster DNS, kube-proxy on both nodes, cross-node routing); `kubectl logs` of a worker's pod.
# Then `kubeadm reset -f` on the worker (the host's files untouched) and on the host, and nothing is left: no
# process, mount, namespace, link, route, cgroup or nft table the script made (a trap cleans up on failure too; a
# killed run's worker is removed by the next run). Test traffic stays on this machine: blackhole routes for the
# cluster CIDRs on both nodes, and the worker has no default route.
# Usage: deploy/kubeadm-join-e2e.sh [BIN_DIR]   (default target/debug; the binaries are built first)
# It takes /run/kubeadm-e2e.lock (as deploy/kubeadm-e2e.sh does) and waits for a cluster already on this machine
# to go (up to 30 min); it never touches one it did not make. KEEP_WORK=1 keeps the logs; KJ_PAUSE=N leaves a
# failed run's cluster up N seconds for a look before cleaning up.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${1:-target/debug}
# CIDRs no other test uses. The pod CIDR is split by the controller-manager into a /24 per node.
POD_CIDR=10.252.0.0/17
SERVICE_CIDR=10.252.128.0/17
HOST_IP=10.253.254.1
WORKER_IP=10.253.254.2
WORKER=kj-worker
VETH_HOST=kj-h
# The worker's own directories on the host's disk, bound over the standard paths in its mount namespace.
W=/var/lib/kj-worker
CGROUP_ROOT=/kj-worker
CRI=unix:///run/containerd/containerd.sock
step() { echo "==> [kubeadm-join-e2e] $*"; }
fail() { echo "FAIL [kubeadm-join-e2e] $*" >&2; exit 1; }
# shellcheck source=deploy/lib/netns-node.sh
. deploy/lib/netns-node.sh
NODE_BLACKHOLES="$POD_CIDR $SERVICE_CIDR"

[ "$(id -u)" = 0 ] || fail "must run as root"
# One kubeadm end-to-end run on this machine at a time: they share the host's /etc/kubernetes, kubelet and ports.
# (Daemons are started with fd 9 closed, so none holds the lock after the run.)
exec 9>/run/kubeadm-e2e.lock
timeout 1800 flock 9 || fail "another kubeadm end-to-end run holds /run/kubeadm-e2e.lock"
# A cluster already here (a quick start, a kubeadm-e2e.sh of a version without the lock): not ours to replace;
# wait for it to go.
busy() {
  [ -f /etc/kubernetes/admin.conf ] || [ -n "$(ls -A /etc/kubernetes/manifests 2>/dev/null)" ] \
    || (exec 3<>/dev/tcp/127.0.0.1/6443) 2>/dev/null || pgrep -f "deploy/kubeadm-e2e.sh" >/dev/null
}
if busy; then
  step "a cluster is running on this machine; waiting for it to go (up to 30 min)"
  for _ in $(seq 1 360); do busy || break; sleep 5; done
  ! busy || fail "a cluster is already here (/etc/kubernetes/admin.conf, static pods or port 6443)"
fi

case "$BIN_DIR" in
  target/release) cargo build --release --locked --bins ;;
  target/debug) cargo build --locked --bins ;;
esac

work=$(mktemp -d)
containerd_pid=""
worker_reset=false
host_owned=false

# wexec CMD...: runs CMD in the worker's namespaces (network, mount, UTS).
wexec() { node_exec "$WORKER" "$@"; }

# kill_pidfile FILE: ends the process whose pid FILE holds (a worker's kubelet-run.sh pid file).
kill_pidfile() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  return 0
}

cleanup() {
  local rc=$?
  set +e
  step "cleaning up"
  [ -n "${ip_forward_before:-}" ] && sysctl -qw net.ipv4.ip_forward="$ip_forward_before"
  if [ "$rc" != 0 ]; then
    [ -n "${KJ_PAUSE:-}" ] && { echo "paused for $KJ_PAUSE s"; sleep "$KJ_PAUSE"; }
    echo "--- the host's kubelet log (tail)"; tail -30 /var/log/kubelet.log 2>/dev/null
    echo "--- the worker's kubelet log (tail)"; tail -30 "$W/log/kubelet.log" 2>/dev/null
  fi
  if [ -f "$W/holder.pid" ] && kill -0 "$(cat "$W/holder.pid")" 2>/dev/null && ! $worker_reset; then
    wexec /usr/bin/kubeadm reset -f --cri-socket="$CRI" >"$work/worker-reset-cleanup.log" 2>&1
  fi
  kill_pidfile "$W/run/kubelet-supervisor.pid"; kill_pidfile "$W/run/kubelet.pid"
  node_remove "$WORKER" "$VETH_HOST"
  # The host's cluster, only if this run made it.
  if $host_owned; then
    /usr/bin/kubeadm reset -f --cri-socket="$CRI" >"$work/reset-cleanup.log" 2>&1
    kill_pidfile /run/kubelet-supervisor.pid; kill_pidfile /run/kubelet.pid
    nft delete table ip kube-proxy 2>/dev/null; nft delete table ip6 kube-proxy 2>/dev/null
    ip link delete cni0 2>/dev/null
    find /sys/fs/cgroup -maxdepth 2 -type d -name kubepods | while read -r d; do
      find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    rm -f /etc/cni/net.d/10-kubelet-bridge.conflist
  fi
  if [ -n "$containerd_pid" ]; then
    kill "$containerd_pid" 2>/dev/null; wait "$containerd_pid" 2>/dev/null
  fi
  ip route del blackhole "$POD_CIDR" 2>/dev/null; ip route del blackhole "$SERVICE_CIDR" 2>/dev/null
  if [ "${KEEP_WORK:-}" = 1 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
if [ -e "/run/netns/$WORKER" ] || [ -e "$W" ]; then
  step "removing what a killed run left of the worker"
  node_remove "$WORKER" "$VETH_HOST"
fi
ip route del blackhole "$POD_CIDR" 2>/dev/null || true; ip route del blackhole "$SERVICE_CIDR" 2>/dev/null || true

step "the worker's network namespace $WORKER, the veth $VETH_HOST <-> eth0"
# Test traffic stays on this machine: the cluster CIDRs go nowhere but to local routes, on both nodes. The worker
# has no default route at all, only its link.
ip route replace blackhole "$POD_CIDR"
ip route replace blackhole "$SERVICE_CIDR"
# kubeadm's prerequisite (its installation guide): IPv4 packet forwarding; the value before is put back at cleanup.
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
sysctl -qw net.ipv4.ip_forward=1
node_net "$WORKER" "$WORKER_IP/30" "$VETH_HOST"
ip addr add "$HOST_IP/30" dev "$VETH_HOST"

step "installing the binaries from $BIN_DIR (as deploy/install.sh does)"
for b in kubeadm kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy cluster-dns network-policy; do
  install -D -m 0755 "$BIN_DIR/$b" "/usr/bin/$b"
done
install -D -m 0755 deploy/kubelet-run.sh /usr/libexec/kubeadm/kubelet-run.sh
install -d -m 0755 /etc/kubernetes/manifests /var/lib/kubelet /etc/cni/net.d /var/lib/cni /etc/default

step "the host's containerd"
if [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1; then
  step "containerd is already running; using it"
else
  containerd_config /var/lib/containerd /run/containerd >"$work/containerd.toml"
  containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 9>&- &
  containerd_pid=$!
  timeout 10 sh -c 'until [ -S /run/containerd/containerd.sock ]; do sleep 0.1; done'
fi

step "building and importing the images (control plane included)"
BIN_DIR=$BIN_DIR CLUSTER_DNS_BIN=$BIN_DIR/cluster-dns \
  bash deploy/images/build.sh "$work/images" --import --control-plane \
  --only pause,busybox,coredns,kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy >"$work/images.log" 2>&1 \
  || { cat "$work/images.log"; fail "building the images"; }

step "kubeadm init, advertising $HOST_IP (the host's end of the veth, which the worker reaches)"
! busy || fail "a cluster appeared on this machine meanwhile"
host_owned=true
# A bridge an earlier cluster left with another pod CIDR would make the bridge plugin refuse every sandbox.
ip link delete cni0 2>/dev/null || true
kubeadm init --pod-network-cidr="$POD_CIDR" --service-cidr="$SERVICE_CIDR" --apiserver-advertise-address="$HOST_IP" \
  --cri-socket="$CRI" >"$work/init.log" 2>&1 9>&- || { cat "$work/init.log"; fail "kubeadm init"; }
grep -q "Your Kubernetes control-plane has initialized successfully!" "$work/init.log" || fail "init did not finish"
export KUBECONFIG=/etc/kubernetes/admin.conf
HOST_NODE=$(hostname | tr '[:upper:]' '[:lower:]')
kubectl wait --for=condition=Ready "node/$HOST_NODE" --timeout=120s
kubectl taint nodes "$HOST_NODE" node-role.kubernetes.io/control-plane-

step "the worker's mount and UTS namespaces, its own directories under $W, its containerd"
node_namespaces "$WORKER" "$WORKER_IP $WORKER"
# The images its pods use (a CoreDNS replica may land on it too).
node_containerd "$WORKER" "$work/worker-containerd.log" "$work/images" pause,busybox,coredns,kube-proxy

step "kubeadm join of $WORKER with the printed join command"
join_cmd=$(kubeadm token create --print-join-command)
echo "$join_cmd" | grep -q "^kubeadm join $HOST_IP:6443 --token " || fail "unexpected join command: $join_cmd"
start=$(date +%s%N)
# shellcheck disable=SC2086
wexec env -u KUBECONFIG $join_cmd >"$work/join.log" 2>&1 9>&- || { cat "$work/join.log"; fail "kubeadm join"; }
grep -q "This node has joined the cluster" "$work/join.log" || { cat "$work/join.log"; fail "join did not finish"; }
timeout 120 sh -c "until kubectl get node $WORKER -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' 2>/dev/null | grep -q True; do sleep 0.2; done" \
  || { kubectl get node "$WORKER" -o yaml || true; tail -50 "$W/log/kubelet.log" || true; fail "$WORKER did not become Ready"; }
join_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "$WORKER joined and is Ready in ${join_ms} ms"

step "the worker: client certificate from an approved CSR, its own podCIDR (routed), its InternalIP and serving certificate, kube-proxy"
kubectl get csr -o jsonpath='{range .items[*]}{.spec.username} {.status.conditions[*].type}{"\n"}{end}' \
  | grep -q "^system:bootstrap:.* Approved" || fail "no approved CSR of the bootstrap token"
wexec test -f /var/lib/kubelet/pki/kubelet-client-current.pem || fail "the worker has no client certificate"
host_cidr=$(kubectl get node "$HOST_NODE" -o jsonpath='{.spec.podCIDR}')
worker_cidr=$(kubectl get node "$WORKER" -o jsonpath='{.spec.podCIDR}')
[ -n "$worker_cidr" ] && [ "$worker_cidr" != "$host_cidr" ] || fail "podCIDRs: host $host_cidr, worker $worker_cidr"
# The pod network between the nodes, as a "host-gw" network add-on makes it: each node's podCIDR routed to it.
# (Pods on the worker, a CoreDNS replica say, reach the apiserver from their pod IPs from now on.)
ip route replace "$worker_cidr" via "$WORKER_IP" dev "$VETH_HOST"
ip -n "$WORKER" route replace "$host_cidr" via "$HOST_IP" dev eth0
kubectl get node "$WORKER" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}' | grep -qx "$WORKER_IP" \
  || fail "the worker's InternalIP is not $WORKER_IP"
echo | timeout 5 openssl s_client -connect "$WORKER_IP:10250" 2>/dev/null | openssl x509 -noout -ext subjectAltName \
  | grep -q "IP Address:$WORKER_IP" || fail "the worker kubelet's serving certificate does not name $WORKER_IP"
kubectl -n kube-system rollout status daemonset/kube-proxy --timeout=120s
kubectl -n kube-system get pods -l k8s-app=kube-proxy --field-selector "spec.nodeName=$WORKER" \
  -o jsonpath='{.items[0].status.phase}' | grep -qx Running || fail "kube-proxy is not running on $WORKER"
kubectl -n kube-system rollout status deployment/coredns --timeout=180s

# probe NAME NODE URL WANT: a busybox pod on NODE fetches URL until the answer starts with WANT.
probe() {
  local out="" i
  for i in $(seq 1 20); do
    if out=$(kubectl run "$1-$i" --rm -i --restart=Never --image=docker.io/library/busybox:1.36 \
      --overrides="{\"spec\":{\"nodeSelector\":{\"kubernetes.io/hostname\":\"$2\"}}}" -- \
      sh -c "timeout 5 wget -qO- $3" 2>&1) && echo "$out" | grep -q "^$4"; then
      echo "$1: $3 answered $(echo "$out" | grep "^$4") from a pod on $2"
      return 0
    fi
    sleep 2
  done
  fail "$1: no answer from $3 on $2: $out"
}

# serve NAME NODE: a Deployment pinned to NODE (httpd serving /etc: /hostname is the serving pod's name) behind a
# Service NAME.
serve() {
  kubectl apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, labels: {app: $1}}
spec:
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      nodeSelector: {kubernetes.io/hostname: $2}
      containers:
      - {name: httpd, image: docker.io/library/busybox:1.36, command: [httpd, -f, -p, "8080", -h, /etc]}
YAML
  kubectl expose deployment "$1" --port 80 --target-port 8080
}

step "a Service on the worker by name from the host, and one on the host from the worker"
serve web-worker "$WORKER"
serve web-host "$HOST_NODE"
kubectl rollout status deployment/web-worker --timeout=120s
kubectl rollout status deployment/web-host --timeout=120s
[ "$(kubectl get pods -l app=web-worker -o jsonpath='{.items[0].spec.nodeName}')" = "$WORKER" ] || fail "web-worker is not on $WORKER"
# Each kubelet's pods are in its own cgroup tree: the worker's under its cgroup root, the host's under /kubepods.
worker_uid=$(kubectl get pods -l app=web-worker -o jsonpath='{.items[0].metadata.uid}')
host_uid=$(kubectl get pods -l app=web-host -o jsonpath='{.items[0].metadata.uid}')
[ -n "$(find /sys/fs/cgroup -maxdepth 5 -type d -path "*$CGROUP_ROOT/kubepods/besteffort/pod$worker_uid")" ] \
  || fail "the worker's pod has no cgroup under $CGROUP_ROOT/kubepods"
[ -n "$(find /sys/fs/cgroup -maxdepth 4 -type d -path "*/kubepods/besteffort/pod$host_uid" -not -path "*$CGROUP_ROOT/*")" ] \
  || fail "the host's pod has no cgroup under /kubepods"
probe from-host "$HOST_NODE" http://web-worker.default.svc.cluster.local/hostname web-worker-
probe from-worker "$WORKER" http://web-host.default.svc.cluster.local/hostname web-host-
timeout 30 sh -c "until ip netns exec $WORKER nft list table ip kube-proxy | grep -q default/web-host/tcp; do sleep 0.5; done" \
  || fail "no kube-proxy rules for the Services in the worker's nftables"
kubectl logs deployment/web-worker >/dev/null || fail "kubectl logs of a pod on $WORKER (the apiserver to its kubelet)"

kubectl delete deployment web-worker >/dev/null
timeout 60 sh -c "while find /sys/fs/cgroup -maxdepth 5 -type d -path '*$CGROUP_ROOT/kubepods/besteffort/pod$worker_uid' | grep -q .; do sleep 0.5; done" \
  || fail "the worker's pod cgroup is left after the pod is gone"

step "kubeadm reset on the worker, then on the host"
kubectl delete node "$WORKER" --wait=false >/dev/null
wexec kubeadm reset -f --cri-socket="$CRI" >"$work/worker-reset.log" 2>&1 || { cat "$work/worker-reset.log"; fail "worker reset"; }
[ -z "$(find "$W/etc-kubernetes" "$W/kubelet" -type f)" ] \
  || fail "files left on the worker after reset: $(find "$W/etc-kubernetes" "$W/kubelet" -type f)"
left=$(ctr --address "$W/run/containerd/containerd.sock" -n k8s.io tasks ls -q | wc -l)
[ "$left" = 0 ] || fail "$left containers left on the worker after reset"
worker_reset=true
# The worker's reset cleaned its own directories, not the host's under them.
[ -f /var/lib/kubelet/config.yaml ] && [ -f /etc/kubernetes/kubelet.conf ] || fail "the worker's reset removed the host's files"
kubectl get node "$HOST_NODE" >/dev/null || fail "the host node is gone after the worker's reset"
kubeadm reset -f --cri-socket="$CRI" >"$work/reset.log" 2>&1 || { cat "$work/reset.log"; fail "host reset"; }
[ ! -f /etc/kubernetes/admin.conf ] || fail "admin.conf left after reset"
left=$(ctr -n k8s.io tasks ls -q | wc -l)
[ "$left" = 0 ] || fail "$left containers left on the host after reset"

cleanup
trap - EXIT
step "nothing is left"
node_left "$WORKER" "$VETH_HOST"
! ip route | grep -q "10\.252\.\|10\.253\.254\." || fail "routes left: $(ip route | grep '10\.252\.\|10\.253\.254\.')"
! nft list tables | grep -q "kube-proxy" || fail "nft table left"
echo "PASS [kubeadm-join-e2e] $WORKER joined (kubeadm join to node Ready) in ${join_ms} ms; the whole run took ${SECONDS} s"
