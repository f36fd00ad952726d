#!/usr/bin/env bash
# Builds the images a node needs, as OCI image layouts from files on disk (no registry is reachable), and
# imports them into containerd's k8s.io namespace:
#   registry.k8s.io/pause:3.10      our own static pause (deploy/images/pause.c), the sandbox image
#   docker.io/library/busybox:1.36  Debian's busybox-static with its applet links (wget through wget.sh), for
#                                   workloads and tests; also tagged 1.28, 1.30, latest and as e2e's busybox:1.36.1-1
#   docker.io/library/nginx:1.22    Debian's nginx laid out as the official image (welcome page on port 80, logs to
#                                   stdout/stderr); also tagged latest, 1.20.2, 1.17.1 and as e2e's nginx:1.14-4/1.15-4
#   registry.k8s.io/coredns/coredns:v1.12.0
#                                   cluster-dns (the release binary and the shared libraries it loads), the
#                                   cluster DNS add-on of deploy/cluster-dns.yaml under kubeadm's image name
#   registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7
#                                   dig, nslookup and host from Debian's bind9-dnsutils with their libraries, plus
#                                   busybox for a shell, for DNS debugging pods
#   registry.k8s.io/metrics-server/metrics-server:v0.8.0
#                                   metrics-server (the release binary and its shared libraries) as /metrics-server,
#                                   the resource metrics add-on of deploy/metrics-server.yaml
#   registry.k8s.io/e2e-test-images/agnhost:2.53
#                                   agnhost's `webhook` and `crd-conversion-webhook` servers (the e2e crate's agnhost
#                                   binary and its libraries as /agnhost), for webhooks served by pods in tests
# and with --control-plane the rest of what `kubeadm config images list` names, to run kubeadm's static pods and
# add-ons (each binary stripped, with the shared libraries it loads, in /usr/local/bin as upstream's images have it):
#   registry.k8s.io/kube-apiserver:v1.33.0, registry.k8s.io/kube-controller-manager:v1.33.0,
#   registry.k8s.io/kube-scheduler:v1.33.0  the release binaries
#   registry.k8s.io/kube-proxy:v1.33.0      the release binary with the tools it runs (nft, iptables-restore and
#                                           its xtables modules, conntrack, ip)
#   registry.k8s.io/etcd:3.5.21-0           Debian's etcd-server and etcd-client (etcd, etcdctl)
# cluster-dns is taken from $CLUSTER_DNS_BIN, else target/release/cluster-dns (skipped with a warning when missing),
# metrics-server and agnhost from $BIN_DIR likewise;
# the control-plane binaries from $BIN_DIR (default target/release; cargo build --release -p <component>). A
# component image is rebuilt only when its tarball is older than its binary or this script.
# Usage: deploy/images/build.sh [OUT_DIR] [--import [--address SOCKET]] [--control-plane] [--only NAME,...]
#   --only builds (and imports) just the named images: pause, busybox, nginx, coredns, dnsutils, metrics-server, agnhost,
#   kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, etcd.
# A user's own image tarball (docker save or OCI layout) loads the same way:
#   ctr -n k8s.io images import my-image.tar
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-/var/lib/kube-images}
case "$out" in --*) out=/var/lib/kube-images ;; esac
import=false; address=/run/containerd/containerd.sock; control_plane=false; only=""
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --import) import=true ;;
    --address) address=${args[$((i+1))]} ;;
    --control-plane) control_plane=true ;;
    --only) only=${args[$((i+1))]} ;;
  esac
done
# want NAME: whether this run builds that image.
want() {
  if [ -n "$only" ]; then
    case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac
  fi
  case "$1" in
    pause | busybox | nginx | coredns | dnsutils | metrics-server | agnhost) return 0 ;;
    *) $control_plane ;;
  esac
}
built=()
mkdir -p "$out"
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)

sha() { sha256sum "$1" | cut -d' ' -f1; }

# oci_image NAME TAG ROOTFS_DIR ENTRYPOINT_JSON CMD_JSON [CONFIG_FIELDS] -> $out/NAME-TAG.tar; CONFIG_FIELDS are more
# fields of the image config (`"StopSignal":"SIGQUIT"`); with ALIASES="name:tag ..." set, the index names the image
# by those names too (containerd's import makes an image of each).
oci_image() {
  local name=$1 tag=$2 rootfs=$3 entrypoint=$4 cmd=$5 extra=${6:+,$6}
  local work; work=$(mktemp -d)
  mkdir -p "$work/blobs/sha256"
  # Reproducible layer: sorted, fixed owner and time.
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2024-01-01 00:00:00Z' -C "$rootfs" -cf "$work/layer.tar" .
  local diff_id; diff_id=$(sha "$work/layer.tar")
  # Large layers (the component binaries) in zstd: several times faster than gzip -9 at a similar size.
  local media=application/vnd.oci.image.layer.v1.tar+gzip
  if [ "$(stat -c %s "$work/layer.tar")" -gt 4000000 ] && command -v zstd >/dev/null; then
    zstd -q -T0 -12 --rm "$work/layer.tar" -o "$work/layer.tar.z"
    media=application/vnd.oci.image.layer.v1.tar+zstd
  else
    gzip -n -9 "$work/layer.tar"
    mv "$work/layer.tar.gz" "$work/layer.tar.z"
  fi
  local layer; layer=$(sha "$work/layer.tar.z"); local layer_size; layer_size=$(stat -c %s "$work/layer.tar.z")
  mv "$work/layer.tar.z" "$work/blobs/sha256/$layer"
  printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":%s,"Cmd":%s%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"deploy/images/build.sh"}]}' \
    "$arch" "$entrypoint" "$cmd" "$extra" "$diff_id" > "$work/config.json"
  local config; config=$(sha "$work/config.json"); local config_size; config_size=$(stat -c %s "$work/config.json")
  mv "$work/config.json" "$work/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"%s","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$media" "$layer" "$layer_size" > "$work/manifest.json"
  local manifest; manifest=$(sha "$work/manifest.json"); local manifest_size; manifest_size=$(stat -c %s "$work/manifest.json")
  mv "$work/manifest.json" "$work/blobs/sha256/$manifest"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$work/oci-layout"
  local ref entries=()
  for ref in "$name:$tag" ${ALIASES:-}; do
    entries+=("$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s","io.containerd.image.name":"%s"},"platform":{"architecture":"%s","os":"linux"}}' \
      "$manifest" "$manifest_size" "$ref" "$ref" "$arch")")
  done
  printf '{"schemaVersion":2,"manifests":[%s]}' "$(IFS=,; echo "${entries[*]}")" > "$work/index.json"
  local file="$out/$(basename "$name")-$tag.tar"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2024-01-01 00:00:00Z' -C "$work" -cf "$file" oci-layout index.json blobs
  rm -rf "$work"
  built+=("$file")
  echo "built $name:$tag -> $file ($(( $(stat -c %s "$file") / 1024 )) KiB)"
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

# unpack_debs DIR PACKAGE...: Debian packages unpacked, not installed.
# shellcheck source=../lib/debs.sh
source "$here/../lib/debs.sh"

# busybox_applets ROOT [SKIP...]: Debian's busybox as ROOT/bin/busybox (the dynamic build and the libraries it loads:
# the static busybox-static's shell runs its own applets whatever PATH says), a link for each applet but the SKIPped
# ones, and wget.sh as ROOT/bin/wget (busybox's wget with -T/--timeout working: Debian's build segfaults on it).
busybox_applets() {
  local root=$1 applet lib
  shift
  if [ -z "${busybox_pkg:-}" ]; then
    busybox_pkg=$(mktemp -d)
    unpack_debs "$busybox_pkg" busybox
  fi
  mkdir -p "$root/bin"
  cp "$busybox_pkg/bin/busybox" "$root/bin/busybox"
  for lib in $(ldd "$root/bin/busybox" | grep -o '/[^ )]*'); do
    [ -e "$root$lib" ] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  for applet in $("$root/bin/busybox" --list); do
    case " busybox wget $* " in *" $applet "*) continue ;; esac
    [ -e "$root/bin/$applet" ] || ln -sf busybox "$root/bin/$applet"
  done
  install -m 0755 "$here/wget.sh" "$root/bin/wget"
}

if want pause; then
echo "==> pause"
root=$(mktemp -d)
gcc -Os -static -o "$root/pause" "$here/pause.c"
strip "$root/pause"
oci_image registry.k8s.io/pause 3.10 "$root" '["/pause"]' 'null'
rm -rf "$root"
fi

if want busybox; then
echo "==> busybox"
root=$(mktemp -d)
mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/var/www" "$root/proc" "$root/sys" "$root/dev"
chmod 1777 "$root/tmp"
busybox_applets "$root"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
# The tags upstream's docs and e2e tests name (kubectl run ... --image=busybox:1.28, e2e's busybox).
ALIASES="docker.io/library/busybox:1.28 docker.io/library/busybox:1.30 docker.io/library/busybox:latest
  registry.k8s.io/e2e-test-images/busybox:1.36.1-1" \
  oci_image docker.io/library/busybox 1.36 "$root" 'null' '["sh"]'
rm -rf "$root"
fi

if want nginx; then
echo "==> nginx (Debian's nginx)"
# Unpacked from the packages, not installed: installing would start an nginx on this machine.
debs=$(mktemp -d)
unpack_debs "$debs/x" nginx nginx-common
root=$(mktemp -d)
copy_with_libs "$root" "$debs/x/usr/sbin/nginx"
mkdir -p "$root/usr/sbin" "$root/etc/nginx/conf.d" "$root/usr/share/nginx/html" "$root/var/log/nginx" "$root/tmp" \
  "$root/var/lib/nginx" "$root/var/cache/nginx" "$root/var/run" "$root/run" "$root/proc" "$root/sys" "$root/dev"
mv "$root$debs/x/usr/sbin/nginx" "$root/usr/sbin/nginx" && rm -rf "${root:?}${debs:?}"
cp "$debs/x/etc/nginx/mime.types" "$root/etc/nginx/"
cp "$here/nginx/nginx.conf" "$root/etc/nginx/"
cp "$here/nginx/default.conf" "$root/etc/nginx/conf.d/"
cp "$here/nginx/index.html" "$here/nginx/50x.html" "$root/usr/share/nginx/html/"
# As the official image: the logs are the container's output.
ln -s /dev/stdout "$root/var/log/nginx/access.log"
ln -s /dev/stderr "$root/var/log/nginx/error.log"
busybox_applets "$root"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx user:/nonexistent:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnginx:x:101:\nnogroup:x:65534:\n' > "$root/etc/group"
rm -rf "$debs"
ALIASES="docker.io/library/nginx:latest docker.io/library/nginx:1.20.2 docker.io/library/nginx:1.17.1
  registry.k8s.io/e2e-test-images/nginx:1.14-4 registry.k8s.io/e2e-test-images/nginx:1.15-4" \
  oci_image docker.io/library/nginx 1.22 "$root" 'null' '["nginx","-g","daemon off;"]' \
  '"StopSignal":"SIGQUIT","ExposedPorts":{"80/tcp":{}}'
rm -rf "$root"
fi

repo=$(cd "$here/../.." && pwd)
if want coredns; then
echo "==> cluster-dns"
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
fi

if want dnsutils; then
echo "==> dnsutils"
if ! command -v dig >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bind9-dnsutils >/dev/null
fi
root=$(mktemp -d)
mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
chmod 1777 "$root/tmp"
copy_with_libs "$root" "$(command -v dig)" "$(command -v nslookup)" "$(command -v host)"
# dig, host and nslookup are bind's; the rest of the tools are busybox's.
busybox_applets "$root" nslookup host
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
oci_image registry.k8s.io/e2e-test-images/jessie-dnsutils 1.7 "$root" 'null' '["sh"]'
rm -rf "$root"
fi

# The control plane and node add-ons, as kubeadm names their images.
bin_dir=${BIN_DIR:-$repo/target/release}

version=v1.33.0
passwd() {
  mkdir -p "$1/etc" "$1/tmp" "$1/var/run"
  chmod 1777 "$1/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$1/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$1/etc/group"
  printf 'hosts: files dns\n' > "$1/etc/nsswitch.conf"
}
# fresh FILE INPUT...: the tarball exists and is newer than every input (then it is not rebuilt).
fresh() {
  local file=$1; shift
  [ -f "$file" ] || return 1
  local f
  for f in "$@" "$0"; do [ "$f" -nt "$file" ] && return 1; done
  return 0
}
# component NAME [TOOL...]: registry.k8s.io/NAME:$version with $bin_dir/NAME in /usr/local/bin, and the tools.
component() {
  local name=$1; shift
  local bin=$bin_dir/$name file="$out/$name-$version.tar" started=$SECONDS
  echo "==> $name"
  if [ ! -x "$bin" ]; then
    echo "warning: no $name binary ($bin; cargo build --release -p $name): its image is not built" >&2
    return 0
  fi
  if fresh "$file" "$bin"; then
    built+=("$file"); echo "up to date: $file"; return 0
  fi
  local root; root=$(mktemp -d)
  copy_with_libs "$root" "$bin" "$@"
  mv "$root$bin" "$root/.bin"
  find "$root" -depth -type d -empty -delete 2>/dev/null || true
  mkdir -p "$root/usr/local/bin"
  mv "$root/.bin" "$root/usr/local/bin/$name"
  strip "$root/usr/local/bin/$name" 2>/dev/null || true
  passwd "$root"
  if declare -F "extra_${name//-/_}" >/dev/null; then "extra_${name//-/_}" "$root"; fi
  oci_image "registry.k8s.io/$name" "$version" "$root" "[\"/usr/local/bin/$name\"]" 'null'
  rm -rf "$root"
  echo "    $name: $((SECONDS - started)) s"
}
if want metrics-server; then
echo "==> metrics-server"
ms_bin=$bin_dir/metrics-server
if [ ! -x "$ms_bin" ]; then
  echo "warning: no metrics-server binary ($ms_bin; cargo build --release -p metrics-server): its image is not built" >&2
elif fresh "$out/metrics-server-v0.8.0.tar" "$ms_bin"; then
  built+=("$out/metrics-server-v0.8.0.tar"); echo "up to date: $out/metrics-server-v0.8.0.tar"
else
  root=$(mktemp -d)
  mkdir -p "$root/tmp" "$root/etc"
  chmod 1777 "$root/tmp"
  copy_with_libs "$root" "$ms_bin"
  mv "$root$ms_bin" "$root/metrics-server"
  find "$root" -depth -type d -empty -delete 2>/dev/null || true
  # The find above removes the still empty /tmp and /etc.
  mkdir -p "$root/tmp" "$root/etc" && chmod 1777 "$root/tmp"
  strip "$root/metrics-server" 2>/dev/null || true
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  # Upstream's image: ENTRYPOINT ["/metrics-server"], run as a non-root user.
  oci_image registry.k8s.io/metrics-server/metrics-server v0.8.0 "$root" '["/metrics-server"]' 'null'
  rm -rf "$root"
fi
fi
if want agnhost; then
echo "==> agnhost"
ag_bin=$bin_dir/agnhost
if [ ! -x "$ag_bin" ]; then
  echo "warning: no agnhost binary ($ag_bin; cargo build -p e2e --bin agnhost): its image is not built" >&2
elif fresh "$out/agnhost-2.53.tar" "$ag_bin"; then
  built+=("$out/agnhost-2.53.tar"); echo "up to date: $out/agnhost-2.53.tar"
else
  root=$(mktemp -d)
  copy_with_libs "$root" "$ag_bin"
  mv "$root$ag_bin" "$root/agnhost"
  find "$root" -depth -type d -empty -delete 2>/dev/null || true
  strip "$root/agnhost" 2>/dev/null || true
  passwd "$root"
  # Upstream's image: ENTRYPOINT ["/agnhost"]; manifests name the subcommand in args.
  oci_image registry.k8s.io/e2e-test-images/agnhost 2.53 "$root" '["/agnhost"]' 'null'
  rm -rf "$root"
fi
fi
want kube-apiserver && component kube-apiserver
want kube-controller-manager && component kube-controller-manager
want kube-scheduler && component kube-scheduler
if want kube-proxy; then
  # kube-proxy runs nft, iptables-restore/-save (the nft backend under the plain names, as Debian's default,
  # and the legacy one under -legacy, with their xtables modules), conntrack and ip.
  tools=()
  for t in nft xtables-nft-multi xtables-legacy-multi conntrack ip; do
    p=$(command -v "$t" 2>/dev/null) && tools+=("$(readlink -f "$p")")
  done
  extra_kube_proxy() {
    local root=$1 multi d
    for d in /usr/lib/*-linux-gnu/xtables; do
      [ -d "$d" ] && mkdir -p "$root$d" && cp -a "$d/." "$root$d/"
    done
    multi=$(cd "$root" && ls usr/sbin/xtables-nft-multi 2>/dev/null) || true
    if [ -n "$multi" ]; then
      for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
        ln -sf xtables-nft-multi "$root/usr/sbin/$n"
        ln -sf xtables-nft-multi "$root/usr/sbin/${n/tables/tables-nft}"
        [ -e "$root/usr/sbin/xtables-legacy-multi" ] && ln -sf xtables-legacy-multi "$root/usr/sbin/${n/tables/tables-legacy}"
      done
    fi
  }
  component kube-proxy "${tools[@]}"
fi
if want etcd; then
  echo "==> etcd (Debian's etcd-server and etcd-client)"
  file="$out/etcd-3.5.21-0.tar"
  if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
  fi
  if fresh "$file" "$(command -v etcd)" "$(command -v etcdctl)"; then
    built+=("$file"); echo "up to date: $file"
  else
    root=$(mktemp -d)
    copy_with_libs "$root" "$(command -v etcd)" "$(command -v etcdctl)"
    mkdir -p "$root/.bin" && mv "$root$(command -v etcd)" "$root$(command -v etcdctl)" "$root/.bin/"
    find "$root" -depth -type d -empty -delete 2>/dev/null || true
    mkdir -p "$root/usr/local" "$root/var/lib/etcd" && mv "$root/.bin" "$root/usr/local/bin"
    passwd "$root"
    oci_image registry.k8s.io/etcd 3.5.21-0 "$root" 'null' '["/usr/local/bin/etcd"]'
    rm -rf "$root"
  fi
fi

rm -rf "${busybox_pkg:-}"

if $import; then
  echo "==> importing into containerd ($address, namespace k8s.io)"
  for f in "${built[@]}"; do
    [ -f "$f" ] || continue
    ctr --address "$address" -n k8s.io images import --all-platforms "$f"
  done
  ctr --address "$address" -n k8s.io images ls -q | grep -E 'pause|busybox|coredns|dnsutils|kube-|etcd' || true
fi
