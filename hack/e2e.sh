#!/usr/bin/env bash
# Runs the end-to-end scenarios of tests/e2e.rs: each brings up a loopback control plane
# (hack/cluster/up), installs the Helm chart, runs the operator as a local process with the
# chart's ServiceAccount, and drives real `movrek serve` processes on pod IPs, Traefik (the
# Gateway API implementation), Prometheus with Kubernetes discovery and nginx (the legacy
# ingress-nginx stand-in) (tests/e2e/). Every process is stopped by pid at the end. Needs root
# (the pod network is a network namespace).
#
#   hack/e2e.sh                 every scenario
#   hack/e2e.sh s03             scenarios whose name contains s03 (cargo test filter)
#
# Honours CARGO_TARGET_DIR and MOVREK_CACHE. Prints the wall time at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOVREK_CACHE="${MOVREK_CACHE:-/var/cache/movrek}"
T0=$EPOCHREALTIME

./hack/deps.sh                 # nginx, iproute2 (and Debian's prometheus, for the cargo tests)
./hack/cluster/build.sh        # kube-apiserver, etcd, kwok, kubectl, helm (cached)
./hack/gateway/build.sh        # Traefik, Gateway API CRDs (cached)
./hack/prometheus/build.sh     # Prometheus with kubernetes_sd_configs (cached)
echo "== cargo build (movrek, movrek-operator)"
cargo build --locked -p movrek-inference --bin movrek
cargo build --locked -p movrek-operator --bin movrek-operator
echo "== cargo test --test e2e -- --ignored --test-threads=1 $*"
status=0
cargo test --locked -p movrek-operator --test e2e -- --ignored --test-threads=1 --nocapture "$@" || status=$?
awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "e2e wall time: %.1f s (including builds)\n", b - a }'
exit "$status"
