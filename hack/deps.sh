#!/usr/bin/env bash
# Installs the system packages movrek's tests and benchmarks use, once. Safe to run again.
# Installs prometheus (analysis tests), nginx (the end-to-end legacy ingress stand-in) and
# iproute2 (the local cluster's pod network) by default.
# Usage: hack/deps.sh [extra apt packages...]
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# nginx: the e2e data-plane stand-in renders Ingresses into it; tests start their own instance.
[ -x /usr/sbin/nginx ] || need+=(nginx)
# ip (iproute2): hack/cluster/netns makes the pod network with ip netns / ip link.
command -v ip >/dev/null 2>&1 || need+=(iproute2)
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Do not let package scripts start daemons (prometheus, nginx): tests start their own
  # instances on free loopback ports and stop them by pid.
  policy=/usr/sbin/policy-rc.d
  had_policy=0; [ -e "$policy" ] && had_policy=1
  [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; }
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$had_policy" = 1 ] || rm -f "$policy"
fi
if ! rustup component list --installed 2>/dev/null | grep -q '^clippy'; then
  rustup component add clippy rustfmt
fi
