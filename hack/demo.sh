#!/usr/bin/env bash
# The movrek demo: one local cluster, one RecommenderRelease, four model versions, and the
# operator's decisions as they happen, judged on latency, errors and recommendation quality.
#
#   v1-early   installed as stable (trained on the earliest tenth of the rating history)
#   v2         retrained on all of it: judged no worse than stable → promoted
#   v3-random  as fast, but trained on scrambled users → rolled back on online quality
#   v4-slow    400 ms per answer → rolled back on latency
#
# A real kube-apiserver, etcd and controller-manager on 127.0.0.1, the Helm chart, the
# operator, a movrek serve per pod, Traefik as the Gateway, Prometheus (finding the pods through
# the API server, as the chart's PodMonitor says), a Kafka broker,
# `movrek evaluate`, and `movrek simulate --live` users through the ingress the whole time.
#
# Usage: hack/demo.sh [--keep]
#   --keep   leave everything running at the end and print how to look around; Ctrl-C stops it
# Ctrl-C at any time stops everything the demo started (by pid) and removes the cluster.
# Honours MOVREK_CACHE (default /var/cache/movrek) and CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOVREK_CACHE="${MOVREK_CACHE:-/var/cache/movrek}"
# The demo runs its own broker (hack/kafka/up) and stops it at the end.
unset MOVREK_KAFKA_BOOTSTRAP
for arg in "$@"; do
  case "$arg" in
    --keep) ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument $arg (usage: hack/demo.sh [--keep])" >&2; exit 2 ;;
  esac
done

cold=()
[ -x "$MOVREK_CACHE/k8s/bin/kube-apiserver" ] ||
  cold+=("the Kubernetes control plane from the Go module proxy (about 9 minutes on 2 cores)")
ls "$MOVREK_CACHE"/kafka/*/.complete >/dev/null 2>&1 ||
  cold+=("the Kafka broker's jars from Maven Central (under a minute)")
[ -x /usr/sbin/nginx ] || cold+=("nginx from Debian (a minute)")
[ -x "$MOVREK_CACHE/prometheus/bin/prometheus" ] ||
  cold+=("Prometheus (with Kubernetes discovery) from the Go module proxy (a few minutes)")
target="${CARGO_TARGET_DIR:-target}"
[ -x "$target/debug/movrek" ] && [ -x "$target/debug/movrek-operator" ] ||
  cold+=("movrek and movrek-operator with cargo (about 4 minutes)")
if [ ${#cold[@]} -gt 0 ]; then
  echo "First run: building and caching, once:"
  printf '  - %s\n' "${cold[@]}"
  echo "Then the demo itself takes about 6 minutes."
else
  echo "Everything is cached: the demo takes about 6 minutes."
fi

echo "== [1/4] nginx";                    ./hack/deps.sh
echo "== [2/4] control plane binaries";   ./hack/cluster/build.sh
echo "== [2/4] gateway (Traefik) and Gateway API CRDs"; ./hack/gateway/build.sh
echo "== [2/4] Prometheus with Kubernetes discovery"; ./hack/prometheus/build.sh
echo "== [3/4] Kafka jars";                KAFKA_BUILD_QUIET=1 ./hack/kafka/build.sh >/dev/null
echo "== [4/4] cargo build";
cargo build --locked -q -p movrek-inference --bin movrek
cargo build --locked -q -p movrek-operator --bin movrek-operator --example demo
exec "$target/debug/examples/demo" "$@"
