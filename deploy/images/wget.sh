#!/bin/sh
# wget for the busybox images: busybox's own wget, with -T/--timeout made to work. Debian's busybox is built without
# FEATURE_WGET_TIMEOUT, and its wget then writes the -T value through a null pointer (a segfault, exit 139), which
# breaks the first command of upstream's docs (`wget --spider --timeout=1 nginx`). The timeout is kept here and
# applied with busybox's `timeout` to the whole transfer (busybox applies it to each connect and read), with
# busybox's own message and status when it fires.
t=
n=$#
while [ "$n" -gt 0 ]; do
  a=$1
  shift
  n=$((n - 1))
  case $a in
    -T | --timeout)
      [ "$n" -gt 0 ] || { echo "wget: option requires an argument -- 'T'" >&2; exit 1; }
      t=$1
      shift
      n=$((n - 1))
      ;;
    -T*) t=${a#-T} ;;
    --timeout=*) t=${a#--timeout=} ;;
    *) set -- "$@" "$a" ;;
  esac
done
[ -n "$t" ] || exec /bin/busybox wget "$@"
/bin/busybox timeout -s INT "$t" /bin/busybox wget "$@"
rc=$?
case $rc in
  124 | 130)
    echo "wget: download timed out" >&2
    exit 1
    ;;
esac
exit $rc
