#!/usr/bin/env bash
# Builds the DaemonSet's image without any registry: a minimal Debian root filesystem made by mmdebstrap from
# Debian's archive, plus the one executable, written as an image archive that `ctr images import`,
# `podman load` and `docker load` accept.
#
#   deploy/image/build.sh [--binary dist/galaxy] [--output dist/galaxy-image.tar] [--name galaxy:0.1.0]
#                         [--cache-dir DIR] [--mirror URL] [--suite bookworm]
#
# Layer 1, the root filesystem (Debian's essential set plus what Galaxy execs): iproute2 (ip), iptables (both
# the legacy and nft backends, so the backend can follow the host's), ipset, iputils-arping (arping), util-linux
# (nsenter), and Debian's host-local and loopback CNI plugins in /usr/lib/cni (the rest of
# containernetworking-plugins is removed). No docs, man pages, locales or apt. It is cached in --cache-dir
# (default /var/cache/galaxy-image), keyed by everything that goes into it, so only the first build downloads;
# delete the cache (or change the mirror or suite) to pick up Debian's security updates.
# Layer 2: the executable at /opt/cni/galaxy/bin/galaxy (Go Galaxy's layout) with a link per plugin name, and the
# same file (a hard link, not a copy) at /usr/bin/galaxy: deploy/galaxy.yaml mounts the host's
# /opt/cni/galaxy/bin over the image's, and `galaxy install` copies from /usr/bin/galaxy into it.
# Needs root (mmdebstrap's root mode, run in a private mount namespace), mmdebstrap, tar, gzip and deno.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
binary=$REPO/dist/galaxy
output=$REPO/dist/galaxy-image.tar
name=galaxy:0.1.0
cache=${GALAXY_IMAGE_CACHE:-/var/cache/galaxy-image}
mirror=http://deb.debian.org/debian
suite=bookworm
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --output) output=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --cache-dir) cache=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$binary" ] || { echo "build.sh: no executable at $binary (run deno task compile first)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "build.sh: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "build.sh: needs root (mmdebstrap's root mode)" >&2; exit 1; }

# usr-is-merged: otherwise apt satisfies init-system-helpers with usrmerge, which brings perl.
packages=usr-is-merged,iproute2,iptables,ipset,iputils-arping,util-linux,containernetworking-plugins
# Debian's plugins except these two go, and so do docs and friends (removed after installing: dpkg's
# path-exclude trips over packages unpacked into the excluded folders).
keep_plugins="host-local loopback"
excludes=(usr/share/doc usr/share/man usr/share/info usr/share/locale usr/share/lintian usr/share/bash-completion
  usr/share/zsh var/cache var/log var/lib/apt/lists)
# Everything the root filesystem depends on, so the cache key changes whenever it would.
recipe="v1 suite=$suite mirror=$mirror packages=$packages keep=$keep_plugins excludes=${excludes[*]}"
key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
rootfs=$cache/rootfs-$key.tar.gz
mkdir -p "$cache"

if [ ! -s "$rootfs" ]; then
  echo "build.sh: building the Debian root filesystem ($suite from $mirror; cached as $rootfs)" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # SOURCE_DATE_EPOCH: the same inputs give the same bytes. The mount namespace keeps mmdebstrap's mounts
  # (proc, sys, dev in the chroot) off the host's.
  SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0} unshare --mount --propagation private \
    mmdebstrap ${GALAXY_IMAGE_VERBOSE:---quiet} --mode=root --variant=essential --format=tar --include="$packages" \
    --customize-hook="find \"\$1/usr/lib/cni\" -mindepth 1 -maxdepth 1 $(printf '! -name %s ' $keep_plugins) -delete" \
    --customize-hook="cd \"\$1\" && for d in ${excludes[*]}; do rm -rf \"\$d\" && mkdir -p \"\$d\"; done" \
    "$suite" "$work/rootfs.tar" \
    "deb $mirror $suite main" "deb $mirror $suite-updates main" \
    "deb ${mirror%/debian}/debian-security $suite-security main" </dev/null
  gzip -n -6 <"$work/rootfs.tar" >"$work/rootfs.tar.gz"
  mv "$work/rootfs.tar.gz" "$rootfs"
fi

mkdir -p "$(dirname "$output")"
# The pinned deno of the checkout when none is on PATH.
deno=$(command -v deno || echo "$REPO/node_modules/.bin/deno")
exec "$deno" run --quiet --allow-all "$REPO/tools/oci_archive.ts" --rootfs "$rootfs" --binary "$binary" \
  --name "$name" --output "$output"
