#!/usr/bin/env bash
# Throughput and memory of `movrek evaluate` (release build) on a real Kafka broker
# (hack/kafka): a seeded synthetic log (bench/online/gen_log.py, sorted by event time) is
# produced to an `events` topic of PARTITIONS partitions keyed by user id (its
# recommendation-request lines are the impressions: --log-impressions), then the evaluator
# reads it from the start with 1 s checkpoints and stops when idle. Prints events/s over the
# evaluator's busy time, its peak RSS, and the counts it exported last.
#
# Usage: bench/evaluate.sh [LINES]       LINES [1000000]
# Environment: USERS [100000], PARTITIONS [4], WORK [/var/tmp/movrek/bench-evaluate],
#   GAP [2] seconds of event time between sessions, ORDER [random] or cycle (every user in
#   turn). `USERS=1000000 GAP=0.0036 ORDER=cycle bench/evaluate.sh 7300000` puts 1M distinct
#   users inside one hour of event time: all of them hold join state at once.
# Everything listens on 127.0.0.1; the broker and the evaluator are stopped by pid.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LINES=${1:-1000000}
USERS=${USERS:-100000}
PARTITIONS=${PARTITIONS:-4}
GAP=${GAP:-2}
ORDER=${ORDER:-random}
WORK=${WORK:-/var/tmp/movrek/bench-evaluate}
IDLE=3
mkdir -p "$WORK"
BROKER_DIR=$WORK/broker-$$
EVAL_PID=""
cleanup() {
  [ -n "$EVAL_PID" ] && kill "$EVAL_PID" 2>/dev/null || true
  "$ROOT/hack/kafka/down" "$BROKER_DIR" >/dev/null 2>&1 || true
  rm -rf "$BROKER_DIR"
}
trap cleanup EXIT

cargo build --release --locked -p movrek-inference --bin movrek --manifest-path "$ROOT/Cargo.toml" >&2
MOVREK=${CARGO_TARGET_DIR:-$ROOT/target}/release/movrek
"$ROOT/hack/kafka/build.sh" >&2
BROKER=$("$ROOT/hack/kafka/up" "$BROKER_DIR" "$PARTITIONS" | tail -n1)

LOG=$WORK/events-$LINES-$USERS-$GAP-$ORDER.sorted.log
if [[ ! -s $LOG ]]; then
  python3 "$ROOT/bench/online/gen_log.py" "$LINES" "$USERS" "$WORK/unsorted.log" "$GAP" "$ORDER"
  # ISO times sort as text; a stable sort keeps each second's lines in their order.
  LC_ALL=C sort -s -t, -k1,1 "$WORK/unsorted.log" > "$LOG"
  rm -f "$WORK/unsorted.log"
fi
lines=$(wc -l < "$LOG")
echo "log: $lines lines, $(du -h "$LOG" | cut -f1), $USERS users ($ORDER, sessions ${GAP}s apart, $(cut -d, -f2 "$LOG" | sort -u | wc -l) distinct); broker $BROKER, $PARTITIONS partitions"

started=$(date +%s.%N)
awk -F, '{ print $2 "\t" $0 }' "$LOG" |
  "$ROOT/hack/kafka/tool" console-producer --bootstrap-server "$BROKER" --topic events \
    --reader-property parse.key=true --reader-property $'key.separator=\t' \
    --producer-property linger.ms=50 --producer-property batch.size=1048576 \
    --producer-property acks=all >/dev/null
echo "produced in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s (Kafka console producer)"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
started=$(date +%s.%N)
MOVREK_LOG=warn /usr/bin/time -f '%e %M' -o "$WORK/time.txt" "$MOVREK" evaluate \
  --brokers "$BROKER" --log-impressions --name "bench-$$" --state-topic "bench-state-$$" \
  --bind 127.0.0.1 --port "$port" --default-runtime 10 --exit-when-idle-secs "$IDLE" &
EVAL_PID=$!
last=""
while kill -0 "$EVAL_PID" 2>/dev/null; do
  metrics=$(curl -fs "http://127.0.0.1:$port/metrics" 2>/dev/null || true)
  [ -n "$metrics" ] && last=$metrics
  sleep 0.5
done
wait "$EVAL_PID"
EVAL_PID=""
read -r secs rss_kib < "$WORK/time.txt"
busy=$(awk -v s="$secs" -v i="$IDLE" 'BEGIN { printf "%.2f", s - i }')
records=$(awk '$1 == "movrek_online_records_total" { print $2 }' <<<"$last")
echo "evaluate: $secs s in all, $busy s busy (less the ${IDLE} s idle limit), peak RSS $((rss_kib / 1024)) MiB"
awk -v n="$lines" -v b="$busy" 'BEGIN { printf "throughput: %.0f events/s (every line read; lines in the last lateness minute stay queued)\n", n / b }'
echo "last metrics before exit: records counted $records"
grep -E '^movrek_online_(score_count|hits_total|impressions_total)|^movrek_online_open_pairs|^movrek_online_users' <<<"$last" | sed 's/^/  /'
