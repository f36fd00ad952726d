# deploy/lib/netns-node.sh (sourced): a Kubernetes node simulated in namespaces of its own on this machine, for the
# multi-node end-to-end scripts (deploy/kubeadm-join-e2e.sh, deploy/kubeadm-ha-e2e.sh).
#
# A node NAME is:
# - a network namespace NAME with one interface, eth0, the far end of a veth whose host end the caller names (and
#   addresses, or puts on a bridge); no default route: it reaches only what the caller routes to it;
# - a mount namespace (host mounts propagate in, none out) where its own directories under /var/lib/NAME are bound
#   over /etc/kubernetes, /var/lib/kubelet, /var/lib/kube-apiserver, /var/lib/etcd, /run (containerd's socket and
#   state, kubelet-run.sh's pid files), /var/log, /etc/cni/net.d, /var/lib/cni, /etc/default (its
#   KUBELET_EXTRA_ARGS: --cgroup-root=/NAME, so its pods' cgroups are apart from the host's) and /etc/hosts;
# - a UTS namespace with the hostname NAME;
# - its own containerd (root /var/lib/NAME/containerd, socket /var/lib/NAME/run/containerd/containerd.sock).
# node_exec NAME CMD... runs CMD in it. node_remove NAME LINK ends every process of the node (in its network
# namespace, or in cgroups under its cgroup root: its pods' containers) and removes its link, namespace, cgroups and
# directories: also what a killed run left.
#
# Needs: `fail` defined by the caller; fd 9 is closed for every daemon started here (the e2e scripts' lock).

node_dir() { echo "/var/lib/$1"; }

# containerd_config ROOT STATE: a CRI containerd config (cgroupfs, the Debian CNI plugins).
containerd_config() {
  cat <<CTD
version = 2
root = "$1"
state = "$2"
[grpc]
  address = "$2/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
CTD
}

# node_net NAME ADDR/PREFIX HOST_LINK: the network namespace and the veth HOST_LINK <-> eth0 (ADDR inside), up;
# blackhole routes for each CIDR in $NODE_BLACKHOLES inside (test traffic stays on this machine).
node_net() {
  local name=$1 addr=$2 link=$3 cidr
  ip netns add "$name"
  ip link add "$link" type veth peer name eth0 netns "$name"
  ip link set "$link" up
  ip -n "$name" addr add "$addr" dev eth0
  ip -n "$name" link set eth0 up
  ip -n "$name" link set lo up
  for cidr in ${NODE_BLACKHOLES:-}; do ip -n "$name" route replace blackhole "$cidr"; done
  ip netns exec "$name" sysctl -qw net.ipv4.ip_forward=1
}

# node_namespaces NAME HOSTS_LINES: the mount and UTS namespaces, held by a process whose pid is in
# /var/lib/NAME/holder.pid; HOSTS_LINES are added to the node's copy of /etc/hosts.
node_namespaces() {
  local name=$1 hosts=$2 d
  d=$(node_dir "$name")
  mkdir -p "$d"/{etc-kubernetes,kubelet,apiserver,etcd,run,log,cni-net.d,cni,default,containerd}
  sed "/[[:space:]]$name\$/d" /etc/hosts >"$d/hosts"
  printf '%s\n' "$hosts" >>"$d/hosts"
  echo "KUBELET_EXTRA_ARGS=--cgroup-root=/$name" >"$d/default/kubelet"
  containerd_config "$d/containerd" /run/containerd >"$d/containerd.toml"
  mkdir -p /var/lib/kube-apiserver /var/lib/etcd
  nsenter --net="/run/netns/$name" unshare --mount --uts --propagation slave -- sh -c "
    set -e
    mount --bind $d/etc-kubernetes /etc/kubernetes
    mount --bind $d/kubelet /var/lib/kubelet
    mount --bind $d/apiserver /var/lib/kube-apiserver
    mount --bind $d/etcd /var/lib/etcd
    mount --bind $d/run /run
    mount --bind $d/log /var/log
    mount --bind $d/cni-net.d /etc/cni/net.d
    mount --bind $d/cni /var/lib/cni
    mount --bind $d/default /etc/default
    mount --bind $d/hosts /etc/hosts
    hostname $name
    touch /run/ready
    exec sleep infinity" 9>&- >/dev/null 2>&1 &
  echo $! >"$d/holder.pid"
  disown $!
  timeout 10 sh -c "until [ -f $d/run/ready ]; do sleep 0.1; done" || fail "the namespaces of $name were not made"
  [ "$(node_exec "$name" hostname)" = "$name" ] || fail "the hostname of $name"
}

# node_exec NAME CMD...: CMD in the node's network, mount and UTS namespaces.
node_exec() {
  local pid
  pid=$(cat "$(node_dir "$1")/holder.pid")
  shift
  nsenter -t "$pid" -m -n -u -- "$@"
}

# node_containerd NAME LOG IMAGES_DIR IMAGES: the node's containerd (pid in /var/lib/NAME/containerd.pid), with the
# images IMAGES (build.sh --only names) built in IMAGES_DIR imported; nothing is pulled, a node has no way out.
node_containerd() {
  local name=$1 log=$2 images=$3 only=$4 d
  d=$(node_dir "$name")
  node_exec "$name" containerd --config "$d/containerd.toml" >"$log" 2>&1 9>&- &
  echo $! >"$d/containerd.pid"
  timeout 10 sh -c "until [ -S $d/run/containerd/containerd.sock ]; do sleep 0.1; done" || fail "the containerd of $name"
  BIN_DIR=$BIN_DIR CLUSTER_DNS_BIN=$BIN_DIR/cluster-dns \
    bash deploy/images/build.sh "$images" --import --address "$d/run/containerd/containerd.sock" --control-plane \
    --only "$only" >"$log.images" 2>&1 || { cat "$log.images"; fail "importing the images of $name"; }
}

# node_cgroups NAME: the node's cgroup root in each cgroup hierarchy.
node_cgroups() { find /sys/fs/cgroup -maxdepth 2 -type d -path "*/$1"; }

# node_kill NAME: every process of the node ends at once (SIGKILL), as when a machine loses power.
node_kill() {
  local name=$1 pids
  for _ in 1 2 3 4 5; do
    pids=$( { ip netns pids "$name" 2>/dev/null
      node_cgroups "$name" | while read -r c; do find "$c" -name cgroup.procs -exec cat {} +; done 2>/dev/null; } | sort -u)
    [ -z "$pids" ] && break
    echo "$pids" | xargs -r kill -9 2>/dev/null || true
    sleep 0.5
  done
}

# node_remove NAME LINK: nothing of the node is left (also called under set -e for a killed run's leftovers, where
# any of these may already be gone).
node_remove() {
  local name=$1 link=$2 d
  d=$(node_dir "$name")
  node_kill "$name"
  ip link delete "$link" 2>/dev/null || true
  ip netns delete "$name" 2>/dev/null || true
  node_cgroups "$name" | while read -r c; do find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true; done
  rm -rf "$d"
}

# node_left NAME LINK: fails naming what is left of the node.
node_left() {
  local name=$1 link=$2 d
  d=$(node_dir "$name")
  [ ! -e "/run/netns/$name" ] || fail "netns $name left"
  ! ip link show "$link" >/dev/null 2>&1 || fail "link $link left"
  ! grep -q " $d" /proc/mounts || fail "mounts of $name left"
  [ ! -e "$d" ] || fail "$d left"
  [ -z "$(node_cgroups "$name")" ] || fail "cgroups left: $(node_cgroups "$name")"
  ! pgrep -f "$d/" >/dev/null || fail "processes left: $(pgrep -af "$d/")"
}
