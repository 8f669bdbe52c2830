#!/usr/bin/env bash
# Runs every movrek test. Installs what the tests need first (idempotent; caches live outside
# the clone under ${MOVREK_CACHE:-/var/cache/movrek}). CI (.ci/run) calls this script unchanged.
#
#   1. system packages (prometheus, nginx, lua5.1) and the real ml-latest-small data set
#   2. cargo fmt --check, cargo clippy -D warnings, cargo deny (hack/deny.sh), cargo test
#      (unit, mock API server, real Prometheus, real Kafka broker from hack/kafka, real
#      S3-compatible server from hack/s3, CLI, HTTP on loopback)
#   3. the Go-built control plane, Traefik and Prometheus (cached; a cold build takes tens of
#      minutes), then the cluster smoke test and the end-to-end rollout scenarios against a real
#      kube-apiserver
set -euo pipefail
cd "$(dirname "$0")/.."
export MOVREK_CACHE="${MOVREK_CACHE:-/var/cache/movrek}"
mkdir -p "$MOVREK_CACHE"
T0=$SECONDS
# Each stage line says how much disk is left where the build writes (CI machines are small).
free_disk() { df -Pm "${CARGO_TARGET_DIR:-$PWD}" | awk 'NR == 2 { printf "%.1f GiB free", $4 / 1024 }'; }
stage() { printf '== [%4ds] %s (%s)\n' "$((SECONDS - T0))" "$*" "$(free_disk)"; }
# A clean clone with empty caches wrote 13 GiB (measured): 3.3 GiB under target/, 7 GiB of
# Go, cargo and movrek caches, the rest temporary. Say so before starting rather than failing
# half an hour in with "No space left on device".
if [ "$(df -Pm "$PWD" | awk 'NR == 2 { print $4 }')" -lt 14336 ]; then
  echo "test.sh: warning: less than 14 GiB free on $(df -P "$PWD" | awk 'NR == 2 { print $6 }'); a clean run with empty caches writes about 13 GiB" >&2
fi
# A clean clone gains nothing from incremental compilation; it costs time and gigabytes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

stage "system packages"
./hack/deps.sh lua5.1
stage "real MovieLens data (data/ml-latest-small)"
./hack/movielens.sh
export MOVREK_REQUIRE_REAL_DATA=1

stage "cargo fmt --check"
cargo fmt --all -- --check
stage "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
stage "cargo deny (deny.toml)"
./hack/deny.sh
stage "cargo build (binaries the integration tests start)"
cargo build --workspace --bins --locked
stage "Kafka broker jars (hack/kafka/build.sh)"
./hack/kafka/build.sh >/dev/null
stage "Kafka broker for the tests (hack/kafka/up)"
KAFKA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/movrek-test-kafka.XXXXXX")"
S3_DIR="$(mktemp -d "${TMPDIR:-/tmp}/movrek-test-s3.XXXXXX")"
# Both servers are stopped by their pids however this script ends; their logs are kept when a
# stage failed.
stop_servers() {
  local rc=$?
  ./hack/kafka/down "$KAFKA_DIR" || true
  ./hack/s3/down "$S3_DIR" || true
  if [ "$rc" -eq 0 ]; then
    rm -rf "$KAFKA_DIR" "$S3_DIR"
  else
    echo "test.sh: Kafka logs kept in $KAFKA_DIR/logs, S3 server logs in $S3_DIR/logs" >&2
  fi
}
trap stop_servers EXIT
# Each start-up is bounded from outside as well as inside: a start-up script that hangs (one
# did, in `wait` on a healthy server) fails its stage instead of spending CI's 90 minutes.
# timeout(1) signals its whole process group, so a server it started goes too.
bounded() { timeout --kill-after=10 "$@"; }
MOVREK_KAFKA_BOOTSTRAP="$(bounded 300 ./hack/kafka/up "$KAFKA_DIR" | tail -n 1)"
[ -n "$MOVREK_KAFKA_BOOTSTRAP" ] || { echo "test.sh: hack/kafka/up printed no address" >&2; exit 1; }
export MOVREK_KAFKA_BOOTSTRAP MOVREK_REQUIRE_KAFKA=1
stage "S3-compatible server (hack/s3/build.sh: moto from PyPI)"
./hack/s3/build.sh >/dev/null
stage "S3-compatible server for the tests (hack/s3/up)"
MOVREK_S3_ENDPOINT="$(bounded 300 ./hack/s3/up "$S3_DIR" | tail -n 1)"
[ -n "$MOVREK_S3_ENDPOINT" ] || { echo "test.sh: hack/s3/up printed no endpoint" >&2; exit 1; }
# The endpoint and the test principals' credentials (MOVREK_S3_*; see hack/s3/README.md).
set -a
# shellcheck source=/dev/null
. "$S3_DIR/env"
set +a
export MOVREK_S3_ENDPOINT
stage "cargo test"
cargo test --workspace --locked

stage "control-plane binaries (hack/cluster/build.sh)"
./hack/cluster/build.sh
stage "gateway: Traefik and the Gateway API CRDs (hack/gateway/build.sh)"
./hack/gateway/build.sh
stage "Prometheus with Kubernetes discovery for the e2e scenarios (hack/prometheus/build.sh)"
./hack/prometheus/build.sh
stage "cluster smoke test (hack/cluster/smoke.sh)"
MOVREK_OPERATOR_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/movrek-operator" ./hack/cluster/smoke.sh
stage "end-to-end rollout scenarios (hack/e2e.sh)"
# Bounded like the server starts: a scenario that hangs fails here with its timeline printed,
# instead of running into CI's limit (a cold run on 2026-12-04 hung in s08's teardown). Warm,
# the scenarios take about 20 minutes on two cores; cold, their build adds a few.
bounded 3000 ./hack/e2e.sh
stage "done"
