#!/usr/bin/env bash
# End to end: a highly available control plane made with kubeadm on one machine, as the kubeadm documentation's
# "Creating Highly Available Clusters with kubeadm" (stacked control plane and etcd nodes) builds it. Three
# control-plane nodes, kha-1..3, each simulated in namespaces of its own (deploy/lib/netns-node.sh: network, mount
# and UTS namespaces, its own containerd, kubelet and files) on a bridge kha-br (10.249.255.0/24); a TCP load
# balancer for the apiservers on the host at 10.249.255.100:6443 (what haproxy does in the documentation: each
# connection to the first apiserver that accepts it) is the --control-plane-endpoint.
# `kubeadm init --config` (etcd.local, controlPlaneEndpoint) --upload-certs on kha-1, then `kubeadm join ...
# --control-plane --certificate-key` with the printed command on kha-2 and kha-3. Checked: every node Ready and a
# control plane (mirror pods of kube-apiserver, kube-controller-manager, kube-scheduler and etcd on each), a
# three-member etcd cluster, each apiserver serving a certificate for the endpoint and its own address; then the
# node holding the kube-controller-manager lease is killed (SIGKILL of all its processes): writes through the
# endpoint still succeed (two etcd members of three), and the kube-controller-manager and kube-scheduler leases move
# to a live node, whose controller-manager then works (a Deployment gets its ReplicaSet). Then `kubeadm reset` on
# the survivors, and nothing is left: no process, mount, namespace, link, address, route or cgroup (a trap cleans up
# on failure too; a killed run's nodes are removed by the next run). Test traffic stays on this machine: the nodes
# have no default route, and the cluster CIDRs are blackholed on the host and in every node.
# Usage: deploy/kubeadm-ha-e2e.sh [BIN_DIR]   (default target/debug; the binaries are built first)
# It takes /run/kubeadm-e2e.lock, as the other kubeadm e2e scripts do. KEEP_WORK=1 keeps the logs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${1:-target/debug}
POD_CIDR=10.249.0.0/17
SERVICE_CIDR=10.249.128.0/18
BRIDGE=kha-br
BRIDGE_IP=10.249.255.1
ENDPOINT_IP=10.249.255.100
ENDPOINT=$ENDPOINT_IP:6443
NODES=(kha-1 kha-2 kha-3)
declare -A IP=([kha-1]=10.249.255.11 [kha-2]=10.249.255.12 [kha-3]=10.249.255.13)
CRI=unix:///run/containerd/containerd.sock
step() { echo "==> [kubeadm-ha-e2e] $*"; }
fail() { echo "FAIL [kubeadm-ha-e2e] $*" >&2; exit 1; }
# shellcheck source=deploy/lib/netns-node.sh
. deploy/lib/netns-node.sh
NODE_BLACKHOLES="$POD_CIDR $SERVICE_CIDR"

[ "$(id -u)" = 0 ] || fail "must run as root"
exec 9>/run/kubeadm-e2e.lock
timeout 1800 flock 9 || fail "another kubeadm end-to-end run holds /run/kubeadm-e2e.lock"
(exec 3<>"/dev/tcp/127.0.0.1/6443") 2>/dev/null && fail "port 6443 is taken on this machine (a cluster is running)"

case "$BIN_DIR" in
  target/release) cargo build --release --locked --bins ;;
  target/debug) cargo build --locked --bins ;;
esac

work=$(mktemp -d)
lb_pid=""

remove_all() {
  local n
  [ -n "$lb_pid" ] && { kill "$lb_pid" 2>/dev/null || true; }
  for n in "${NODES[@]}"; do node_remove "$n" "$n-h"; done
  ip link delete "$BRIDGE" 2>/dev/null || true
  ip route del blackhole "$POD_CIDR" 2>/dev/null || true
  ip route del blackhole "$SERVICE_CIDR" 2>/dev/null || true
}

cleanup() {
  local rc=$? n
  set +e
  step "cleaning up"
  if [ "$rc" != 0 ]; then
    for n in "${NODES[@]}"; do
      echo "--- the kubelet log of $n (tail)"; tail -20 "$(node_dir "$n")/log/kubelet.log" 2>/dev/null
    done
    echo "--- the load balancer"; cat "$work/lb.log" 2>/dev/null | tail -20
  fi
  for n in "${NODES[@]}"; do
    [ -f "$(node_dir "$n")/holder.pid" ] && kill -0 "$(cat "$(node_dir "$n")/holder.pid")" 2>/dev/null \
      && node_exec "$n" timeout 60 kubeadm reset -f --cri-socket="$CRI" >"$work/reset-cleanup-$n.log" 2>&1
  done
  remove_all
  if [ "${KEEP_WORK:-}" = 1 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
if [ -e /run/netns/kha-1 ] || [ -e "$(node_dir kha-1)" ] || ip link show "$BRIDGE" >/dev/null 2>&1; then
  step "removing what a killed run left"
  remove_all
fi

step "installing the binaries from $BIN_DIR (as deploy/install.sh does)"
for b in kubeadm kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy cluster-dns; do
  install -D -m 0755 "$BIN_DIR/$b" "/usr/bin/$b"
done
install -D -m 0755 deploy/kubelet-run.sh /usr/libexec/kubeadm/kubelet-run.sh

step "the network: bridge $BRIDGE ($BRIDGE_IP, the endpoint $ENDPOINT_IP), a node on it per control plane"
ip route replace blackhole "$POD_CIDR"
ip route replace blackhole "$SERVICE_CIDR"
ip link add "$BRIDGE" type bridge
ip addr add "$BRIDGE_IP/24" dev "$BRIDGE"
ip addr add "$ENDPOINT_IP/32" dev "$BRIDGE"
ip link set "$BRIDGE" up
hosts=""
for n in "${NODES[@]}"; do hosts+="${IP[$n]} $n"$'\n'; done
for n in "${NODES[@]}"; do
  node_net "$n" "${IP[$n]}/24" "$n-h"
  ip link set "$n-h" master "$BRIDGE"
  node_namespaces "$n" "$hosts"
done

step "the load balancer for the apiservers on $ENDPOINT"
python3 - "$ENDPOINT_IP" 6443 "${IP[kha-1]}" "${IP[kha-2]}" "${IP[kha-3]}" >"$work/lb.log" 2>&1 9>&- <<'PY' &
# Each connection goes to the first apiserver, in turn from the next one, that accepts a TCP connection within a
# second; the bytes are then copied both ways.
import asyncio, itertools, sys
host, port, backends = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
turn = itertools.count()

async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        w.close()

async def handle(cr, cw):
    start = next(turn)
    for i in range(len(backends)):
        b = backends[(start + i) % len(backends)]
        try:
            br, bw = await asyncio.wait_for(asyncio.open_connection(b, 6443), 1)
        except (OSError, asyncio.TimeoutError):
            print(f"{b} is down", flush=True)
            continue
        await asyncio.gather(pipe(cr, bw), pipe(br, cw))
        return
    cw.close()

async def main():
    server = await asyncio.start_server(handle, host, port)
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
PY
lb_pid=$!
timeout 10 bash -c "until (exec 3<>/dev/tcp/$ENDPOINT_IP/6443) 2>/dev/null; do sleep 0.1; done" || fail "the load balancer did not start"

step "each node's containerd with the images (built once)"
for n in "${NODES[@]}"; do
  node_containerd "$n" "$work/containerd-$n.log" "$work/images" pause,kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy,etcd,coredns
done

step "kubeadm init on kha-1: stacked etcd, --control-plane-endpoint $ENDPOINT, --upload-certs"
cat >"$(node_dir kha-1)/etc-kubernetes/kubeadm-config.yaml" <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: ${IP[kha-1]}
  bindPort: 6443
nodeRegistration:
  name: kha-1
  criSocket: $CRI
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
controlPlaneEndpoint: "$ENDPOINT"
networking:
  podSubnet: $POD_CIDR
  serviceSubnet: $SERVICE_CIDR
etcd:
  local:
    dataDir: /var/lib/etcd
YAML
start=$(date +%s%N)
node_exec kha-1 env -u KUBECONFIG kubeadm init --config /etc/kubernetes/kubeadm-config.yaml --upload-certs \
  >"$work/init.log" 2>&1 9>&- || { cat "$work/init.log"; fail "kubeadm init on kha-1"; }
init_ms=$(( ($(date +%s%N) - start) / 1000000 ))
grep -q "Your Kubernetes control-plane has initialized successfully!" "$work/init.log" || fail "init did not finish"
# The control-plane join command kubeadm prints (its lines joined).
join_cmd=$(sed -n '/You can now join any number of control-plane nodes/,/Please note that the certificate-key/p' "$work/init.log" \
  | sed -n '/^ *kubeadm join/,/--certificate-key/p' | tr -d '\\\n' | tr -s ' ')
echo "$join_cmd" | grep -q "kubeadm join $ENDPOINT --token .* --discovery-token-ca-cert-hash sha256:.* --control-plane --certificate-key " \
  || { cat "$work/init.log"; fail "no control-plane join command printed: $join_cmd"; }
cp "$(node_dir kha-1)/etc-kubernetes/admin.conf" "$work/admin.conf"
export KUBECONFIG=$work/admin.conf
grep -q "server: https://$ENDPOINT" "$KUBECONFIG" || fail "admin.conf does not point at the endpoint"

for n in kha-2 kha-3; do
  step "kubeadm join --control-plane of $n with the printed command"
  start=$(date +%s%N)
  # shellcheck disable=SC2086
  node_exec "$n" env -u KUBECONFIG $join_cmd --apiserver-advertise-address "${IP[$n]}" --cri-socket "$CRI" \
    >"$work/join-$n.log" 2>&1 9>&- || { cat "$work/join-$n.log"; fail "kubeadm join of $n"; }
  grep -q "This node has joined the cluster and a new control plane instance was created" "$work/join-$n.log" \
    || { cat "$work/join-$n.log"; fail "join of $n did not finish"; }
  echo "$n joined as a control plane in $(( ($(date +%s%N) - start) / 1000000 )) ms"
done

step "three Ready control-plane nodes, a control plane and an etcd member on each"
for n in "${NODES[@]}"; do
  kubectl wait --for=condition=Ready "node/$n" --timeout=120s
  kubectl get node "$n" --show-labels | grep -q "node-role.kubernetes.io/control-plane" || fail "$n is not labelled a control plane"
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler; do
    # A mirror pod may appear a moment after its node is Ready; `kubectl wait` fails at once on a missing pod.
    for _ in $(seq 1 120); do kubectl -n kube-system get "pod/$c-$n" >/dev/null 2>&1 && break; sleep 0.5; done
    kubectl -n kube-system wait --for=condition=Ready "pod/$c-$n" --timeout=120s >/dev/null || fail "$c-$n is not Ready"
  done
  echo | timeout 5 openssl s_client -connect "${IP[$n]}:6443" 2>/dev/null | openssl x509 -noout -ext subjectAltName \
    | grep "IP Address:${IP[$n]}" | grep -q "IP Address:$ENDPOINT_IP" || fail "the apiserver of $n does not serve a certificate for $ENDPOINT_IP and ${IP[$n]}"
done
pki=$(node_dir kha-1)/etc-kubernetes/pki
etcdctl_() {
  ETCDCTL_API=3 etcdctl --endpoints "$1" --cacert "$pki/etcd/ca.crt" --cert "$pki/etcd/healthcheck-client.crt" \
    --key "$pki/etcd/healthcheck-client.key" --command-timeout=5s "${@:2}"
}
members=$(etcdctl_ "https://${IP[kha-1]}:2379" member list)
echo "$members"
[ "$(echo "$members" | grep -c started)" = 3 ] || fail "etcd has not three started members"
for n in "${NODES[@]}"; do echo "$members" | grep -q ", $n, https://${IP[$n]}:2380" || fail "no etcd member $n"; done

step "killing the node that holds the kube-controller-manager lease"
holder() { kubectl -n kube-system get lease "$1" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null | cut -d_ -f1; }
timeout 60 bash -c "until [ -n \"\$(kubectl -n kube-system get lease kube-controller-manager -o jsonpath='{.spec.holderIdentity}' 2>/dev/null)\" ]; do sleep 1; done" \
  || fail "no kube-controller-manager lease"
victim=$(holder kube-controller-manager)
[ -n "${IP[$victim]:-}" ] || fail "the lease holder is not a node: $victim"
echo "kube-controller-manager leader: $victim; kube-scheduler leader: $(holder kube-scheduler)"
node_kill "$victim"
killed_at=$(date +%s%N)
! (exec 3<>"/dev/tcp/${IP[$victim]}/6443") 2>/dev/null || fail "the apiserver of $victim still answers"

step "the cluster without $victim: writes through the endpoint, the leases move"
timeout 60 bash -c "until kubectl create configmap after-$victim --from-literal=k=v >/dev/null 2>&1; do sleep 1; done" \
  || fail "no write succeeded through the endpoint after $victim was killed"
write_ms=$(( ($(date +%s%N) - killed_at) / 1000000 ))
[ "$(kubectl get configmap "after-$victim" -o jsonpath='{.data.k}')" = v ] || fail "the write did not stick"
for l in kube-controller-manager kube-scheduler; do
  timeout 90 bash -c "until h=\$(kubectl -n kube-system get lease $l -o jsonpath='{.spec.holderIdentity}' 2>/dev/null) && [ -n \"\$h\" ] && [ \"\${h%%_*}\" != $victim ]; do sleep 1; done" \
    || fail "the $l lease did not move from $victim"
  echo "$l leader now: $(holder "$l") ($(( ($(date +%s%N) - killed_at) / 1000000 )) ms after the kill)"
done
members=$(etcdctl_ "https://${IP[$( [ "$victim" = kha-1 ] && echo kha-2 || echo kha-1)]}:2379" endpoint health --cluster 2>&1 || true)
echo "$members"
[ "$(echo "$members" | grep -c "is healthy")" = 2 ] || fail "etcd does not have two healthy members of three"
kubectl create deployment after-failover --image=registry.k8s.io/pause:3.10 >/dev/null
timeout 60 bash -c "until kubectl get rs -l app=after-failover -o name | grep -q .; do sleep 1; done" \
  || fail "the new kube-controller-manager leader did not make the Deployment's ReplicaSet"

step "kubeadm reset on the surviving nodes"
for n in "${NODES[@]}"; do
  [ "$n" = "$victim" ] && continue
  node_exec "$n" kubeadm reset -f --cri-socket="$CRI" >"$work/reset-$n.log" 2>&1 || { cat "$work/reset-$n.log"; fail "reset of $n"; }
  [ -z "$(find "$(node_dir "$n")/etc-kubernetes/manifests" "$(node_dir "$n")/kubelet" -type f 2>/dev/null)" ] \
    || fail "files left on $n after reset"
done

trap - EXIT
cleanup
step "nothing is left"
for n in "${NODES[@]}"; do node_left "$n" "$n-h"; done
! ip link show "$BRIDGE" >/dev/null 2>&1 || fail "bridge $BRIDGE left"
! ip route | grep -q "10\.249\." || fail "routes left: $(ip route | grep '10\.249\.')"
! kill -0 "$lb_pid" 2>/dev/null || fail "the load balancer is still running"
echo "PASS [kubeadm-ha-e2e] init ${init_ms} ms; $victim killed: a write through the endpoint after ${write_ms} ms; the whole run took ${SECONDS} s"
