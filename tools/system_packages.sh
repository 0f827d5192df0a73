#!/usr/bin/env bash
# Makes sure the Debian packages that Galaxy's demo and tests need are installed: as root it installs the
# missing ones with apt-get; otherwise it prints the exact command and goes on (kernel tests then skip).
set -euo pipefail
# mmdebstrap builds the DaemonSet image (deploy/image/), containerd imports it in tests/image/, GNU time
# measures peak memory in `deno task bench`; containerd, runc, gcc + libc6-dev (a static pause) and python3 (the
# image writer) run tests/e2e/containerd_test.ts.
packages=(iproute2 iptables ipset iputils-arping iputils-ping util-linux containernetworking-plugins
  mmdebstrap containerd time runc gcc libc6-dev python3)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then missing+=("$p"); fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  echo "missing Debian packages; install them with: sudo apt-get install ${missing[*]}" >&2
fi
