#!/usr/bin/env bash
# Builds the images a node needs, as OCI image layouts from files on disk (no registry is reachable), and
# imports them into containerd's k8s.io namespace:
#   registry.k8s.io/pause:3.10      our own static pause (deploy/images/pause.c), the sandbox image
#   docker.io/library/busybox:1.36  Debian's busybox-static with its applet links, for workloads and tests
#   registry.k8s.io/coredns/coredns:v1.12.0
#                                   cluster-dns (the release binary and the shared libraries it loads), the
#                                   cluster DNS add-on of deploy/cluster-dns.yaml under kubeadm's image name
#   registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7
#                                   dig, nslookup and host from Debian's bind9-dnsutils with their libraries, plus
#                                   busybox for a shell, for DNS debugging pods
# cluster-dns is taken from $CLUSTER_DNS_BIN, else target/release/cluster-dns (skipped with a warning when missing).
# Usage: deploy/images/build.sh [OUT_DIR] [--import [--address SOCKET]]
# A user's own image tarball (docker save or OCI layout) loads the same way:
#   ctr -n k8s.io images import my-image.tar
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-/var/lib/kube-images}
[ "${1:-}" = "--import" ] && out=/var/lib/kube-images
import=false; address=/run/containerd/containerd.sock
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --import) import=true ;;
    --address) address=${args[$((i+1))]} ;;
  esac
done
mkdir -p "$out"
command -v busybox >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; }
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)

sha() { sha256sum "$1" | cut -d' ' -f1; }

# oci_image NAME TAG ROOTFS_DIR ENTRYPOINT_JSON CMD_JSON -> $out/NAME-TAG.tar
oci_image() {
  local name=$1 tag=$2 rootfs=$3 entrypoint=$4 cmd=$5
  local work; work=$(mktemp -d)
  mkdir -p "$work/blobs/sha256"
  # Reproducible layer: sorted, fixed owner and time.
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2024-01-01 00:00:00Z' -C "$rootfs" -cf "$work/layer.tar" .
  local diff_id; diff_id=$(sha "$work/layer.tar")
  gzip -n -9 "$work/layer.tar"
  local layer; layer=$(sha "$work/layer.tar.gz"); local layer_size; layer_size=$(stat -c %s "$work/layer.tar.gz")
  mv "$work/layer.tar.gz" "$work/blobs/sha256/$layer"
  printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":%s,"Cmd":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"deploy/images/build.sh"}]}' \
    "$arch" "$entrypoint" "$cmd" "$diff_id" > "$work/config.json"
  local config; config=$(sha "$work/config.json"); local config_size; config_size=$(stat -c %s "$work/config.json")
  mv "$work/config.json" "$work/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" > "$work/manifest.json"
  local manifest; manifest=$(sha "$work/manifest.json"); local manifest_size; manifest_size=$(stat -c %s "$work/manifest.json")
  mv "$work/manifest.json" "$work/blobs/sha256/$manifest"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$work/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s:%s","io.containerd.image.name":"%s:%s"},"platform":{"architecture":"%s","os":"linux"}}]}' \
    "$manifest" "$manifest_size" "$name" "$tag" "$name" "$tag" "$arch" > "$work/index.json"
  local file="$out/$(basename "$name")-$tag.tar"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2024-01-01 00:00:00Z' -C "$work" -cf "$file" oci-layout index.json blobs
  rm -rf "$work"
  echo "built $name:$tag -> $file"
}

# copy_with_libs ROOT FILE...: copies executables and every shared library they load (ldd), the loader included.
copy_with_libs() {
  local root=$1; shift
  local f lib
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
    for lib in $(ldd "$f" 2>/dev/null | grep -o '/[^ )]*'); do
      [ -e "$root$lib" ] && continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
}

echo "==> pause"
root=$(mktemp -d)
gcc -Os -static -o "$root/pause" "$here/pause.c"
strip "$root/pause"
oci_image registry.k8s.io/pause 3.10 "$root" '["/pause"]' 'null'
rm -rf "$root"

echo "==> busybox"
root=$(mktemp -d)
mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/var/www" "$root/proc" "$root/sys" "$root/dev"
chmod 1777 "$root/tmp"
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
oci_image docker.io/library/busybox 1.36 "$root" 'null' '["sh"]'
rm -rf "$root"

echo "==> cluster-dns"
repo=$(cd "$here/../.." && pwd)
dns_bin=${CLUSTER_DNS_BIN:-$repo/target/release/cluster-dns}
if [ -x "$dns_bin" ]; then
  root=$(mktemp -d)
  mkdir -p "$root/tmp" "$root/etc"
  chmod 1777 "$root/tmp"
  copy_with_libs "$root" "$dns_bin"
  mv "$root$dns_bin" "$root/cluster-dns"
  strip "$root/cluster-dns" 2>/dev/null || true
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  oci_image registry.k8s.io/coredns/coredns v1.12.0 "$root" '["/cluster-dns"]' 'null'
  rm -rf "$root"
else
  echo "warning: no cluster-dns binary ($dns_bin; cargo build --release -p cluster-dns): the coredns image is not built" >&2
fi

echo "==> dnsutils"
if ! command -v dig >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bind9-dnsutils >/dev/null
fi
root=$(mktemp -d)
mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
chmod 1777 "$root/tmp"
copy_with_libs "$root" "$(command -v dig)" "$(command -v nslookup)" "$(command -v host)"
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  # dig, host and nslookup are bind's; the rest of the tools are busybox's.
  case "$applet" in busybox | nslookup | host) continue ;; esac
  [ -e "$root/bin/$applet" ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
oci_image registry.k8s.io/e2e-test-images/jessie-dnsutils 1.7 "$root" 'null' '["sh"]'
rm -rf "$root"

if $import; then
  echo "==> importing into containerd ($address, namespace k8s.io)"
  for f in "$out/pause-3.10.tar" "$out/busybox-1.36.tar" "$out/coredns-v1.12.0.tar" "$out/jessie-dnsutils-1.7.tar"; do
    [ -f "$f" ] || continue
    ctr --address "$address" -n k8s.io images import --all-platforms "$f"
  done
  ctr --address "$address" -n k8s.io images ls -q | grep -E 'pause|busybox|coredns|dnsutils'
fi
