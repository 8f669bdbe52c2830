#!/usr/bin/env bash
# Lag from event to metric of `movrek evaluate` (release build) at a paced live rate, on a
# real Kafka broker (hack/kafka): inference/examples/evaluator_lag.rs produces RATE event
# lines/s (plus one impression per four lines) with event time = now, for SECONDS, keyed by
# user id, while it scrapes the evaluator's /metrics every 25 ms. The lag of a record is
# the time from its produce call to the first scrape whose movrek_online_records_total
# includes it. Prints p50/p99/max over the 10 ms send ticks, with the evaluator's settings.
#
# A record is counted once the watermark (the oldest partition's newest event time, less
# --lateness-secs) passes it, and /metrics shows a count after the checkpoint that holds it
# (--checkpoint-ms). So lateness adds to the lag by design: with the evaluator's default of
# 60 s of lateness the lag is about a minute; LATENESS=0 measures the pipeline itself.
# Scores are exported when an impression's attribution window closes (--window-secs after
# it), which is this lag plus the window.
#
# Usage: bench/evaluator-lag.sh [SECONDS]      SECONDS [60]
# Environment: RATE [5000], LATENESS [0], CHECKPOINT_MS [1000], PARTITIONS [4],
#   MAX_QUEUED [the evaluator's default], WORK [/var/tmp/movrek/bench-evaluator-lag].
# With LATENESS > 0 the records of the last LATENESS seconds are never counted (no newer
# records come to move the watermark): those samples are reported as never reached.
# Everything listens on 127.0.0.1; the broker and the evaluator are stopped by pid.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_RUN=${1:-60}
RATE=${RATE:-5000}
LATENESS=${LATENESS:-0}
CHECKPOINT_MS=${CHECKPOINT_MS:-1000}
PARTITIONS=${PARTITIONS:-4}
WORK=${WORK:-/var/tmp/movrek/bench-evaluator-lag}
mkdir -p "$WORK"
BROKER_DIR=$WORK/broker-$$
EVAL_PID=""
cleanup() {
  [ -n "$EVAL_PID" ] && kill "$EVAL_PID" 2>/dev/null || true
  [ -n "$EVAL_PID" ] && wait "$EVAL_PID" 2>/dev/null || true
  "$ROOT/hack/kafka/down" "$BROKER_DIR" >/dev/null 2>&1 || true
  rm -rf "$BROKER_DIR"
}
trap cleanup EXIT

cargo build --release --locked -p movrek-inference --bin movrek --example evaluator_lag \
  --manifest-path "$ROOT/Cargo.toml" >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
"$ROOT/hack/kafka/build.sh" >&2
BROKER=$("$ROOT/hack/kafka/up" "$BROKER_DIR" "$PARTITIONS" | tail -n1)
echo "broker $BROKER, $PARTITIONS partitions per topic; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
MOVREK_LOG=warn "$TARGET/movrek" evaluate \
  --brokers "$BROKER" --name "lag-$$" --state-topic "lag-state-$$" \
  --lateness-secs "$LATENESS" --checkpoint-ms "$CHECKPOINT_MS" \
  ${MAX_QUEUED:+--max-queued "$MAX_QUEUED"} \
  --bind 127.0.0.1 --port "$port" --default-runtime 100 &
EVAL_PID=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$EVAL_PID" 2>/dev/null || { echo "movrek evaluate exited" >&2; exit 1; }
  sleep 0.1
done
echo "evaluate: --lateness-secs $LATENESS --checkpoint-ms $CHECKPOINT_MS (window 1800 s)"

rc=0
"$TARGET/examples/evaluator_lag" --brokers "$BROKER" --metrics "127.0.0.1:$port" \
  --rate "$RATE" --seconds "$SECONDS_RUN" --drain-seconds $((LATENESS + 30)) || rc=$?
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -E '^movrek_online_(records_total|released_early_total|queued_records|open_pairs|users|checkpoints_total) ' \
  <(curl -fs "http://127.0.0.1:$port/metrics") | sed 's/^/  /'
ps -o rss= -p "$EVAL_PID" | awk '{ printf "  evaluator RSS %d MiB\n", $1 / 1024 }'
exit "$rc"
