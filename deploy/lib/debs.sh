# deploy/lib/debs.sh (sourced): Debian packages' files without installing the packages (installing nginx or
# docker-registry would start a server on this machine), for deploy/images/build.sh and deploy/registry.sh.

# unpack_debs DIR PACKAGE...: the packages' files under DIR, unpacked; each package is downloaded once into
# $DEB_CACHE (default /var/cache/kube-images/debs).
unpack_debs() {
  local dir=$1 cache=${DEB_CACHE:-/var/cache/kube-images/debs} pkg
  local -a debs
  shift
  mkdir -p "$dir" "$cache"
  for pkg in "$@"; do
    debs=("$cache/${pkg}"_*.deb)
    if [ ! -f "${debs[0]}" ]; then
      (cd "$cache" && apt-get download -qq "$pkg" 2>"$dir/err") ||
        { cat "$dir/err" >&2; echo "apt-get download $pkg failed" >&2; exit 1; }
      rm -f "$dir/err"
      debs=("$cache/${pkg}"_*.deb)
    fi
    dpkg-deb -x "${debs[-1]}" "$dir"
  done
}
