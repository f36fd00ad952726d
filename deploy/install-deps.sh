#!/usr/bin/env bash
# Installs what building and testing need from Debian's packages (idempotent; run as root):
# etcd-server (the HA backend, and the etcd side of the storage tests), etcd-client (etcdctl, to inspect keys),
# protobuf-compiler (protoc, for the etcd and CRI gRPC bindings), containerd + runc + containernetworking-plugins (the
# node's runtime), busybox-static and gcc (to build the busybox and pause images), iptables, nftables, ipvsadm,
# ipset, conntrack, bind9-dnsutils and dnsperf (cluster DNS tests, image and benchmark).
set -euo pipefail
pkgs=()
command -v etcd >/dev/null || pkgs+=(etcd-server)
command -v etcdctl >/dev/null || pkgs+=(etcd-client)
command -v protoc >/dev/null || pkgs+=(protobuf-compiler)
command -v containerd >/dev/null || pkgs+=(containerd)
command -v runc >/dev/null || pkgs+=(runc)
[ -x /usr/lib/cni/bridge ] || pkgs+=(containernetworking-plugins)
command -v busybox >/dev/null || pkgs+=(busybox-static)
command -v gcc >/dev/null || pkgs+=(gcc libc6-dev)
command -v iptables >/dev/null || pkgs+=(iptables)
# nft: kube-proxy (nftables mode) and NetworkPolicy enforcement; ipvsadm and ipset (ipvs mode), conntrack (stale UDP
# flows).
command -v nft >/dev/null || pkgs+=(nftables)
command -v ipvsadm >/dev/null || pkgs+=(ipvsadm)
command -v ipset >/dev/null || pkgs+=(ipset)
command -v conntrack >/dev/null || pkgs+=(conntrack)
# bind9-dnsutils (dig, nslookup: cluster-dns's tests and the dnsutils image) and dnsperf (bench/cluster-dns.sh).
command -v dig >/dev/null || pkgs+=(bind9-dnsutils)
command -v dnsperf >/dev/null || pkgs+=(dnsperf)
# openssl: service-account and CA keys in the quick start and the key-format tests.
command -v openssl >/dev/null || pkgs+=(openssl)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "==> installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup)" >&2; exit 1; }
# The Python `kubernetes` client, for e2e/tests/clients.rs (a real client's defaults against the apiserver).
python3 -c 'import kubernetes' 2>/dev/null || pip install --quiet kubernetes ||
  python3 -m pip install --quiet --break-system-packages kubernetes # Debian's python3 (PEP 668)
