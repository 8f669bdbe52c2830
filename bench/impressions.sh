#!/usr/bin/env bash
# What publishing impressions to Kafka costs `movrek serve`, in ONE run on one machine:
#   1. throughput, latency and the server's CPU time per request with impressions off, then
#      on (a real broker from hack/kafka), alternating ROUNDS times so drift on a shared
#      machine hits both sides alike. The broker runs on WRK's CPUs, not the server's: in a
#      cluster it is on other nodes, and what the server pays is its own producer work (the
#      request path's encoding plus librdkafka's threads, which inherit the server's pinning).
#      CPU per request (utime + stime of the server over the run / requests answered) is the
#      figure least moved by scheduling noise; throughput on one pinned core follows it.
#      On a 2-core machine the broker has to share a core with wrk, whose latency clock it
#      would then disturb: the broker runs under SCHED_IDLE (BROKER_SCHED=idle, the default),
#      so it takes only the cycles wrk leaves idle and wrk preempts it at once, as if the
#      broker were on another node; BROKER_SCHED=normal gives the old, shared setup;
#   2. a broker outage under load: wrk runs OUTAGE_SECONDS while the broker is stopped
#      after a third of it and started again after two thirds; failed requests are counted
#      and the server's impression counters are read before and after.
#
# Usage: bench/impressions.sh [DATA_DIR]     (default data/ml-latest-small, else synthetic)
# Environment: DURATION [20s] per measurement, ROUNDS [2], THREADS [2], CONNS [8],
#   OUTAGE_SECONDS [30], SERVER_CPUS [0], WRK_CPUS [1], BROKER_CPUS [$WRK_CPUS],
#   BROKER_SCHED [idle|normal],
#   WORK [/var/tmp/movrek/bench-impressions].
# Everything listens on 127.0.0.1; every process started here is stopped by pid at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${1:-$ROOT/data/ml-latest-small}
DURATION=${DURATION:-20s}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
CONNS=${CONNS:-8}
OUTAGE_SECONDS=${OUTAGE_SECONDS:-30}
PACED_CONNS=${PACED_CONNS:-32}
THINK_MS=${THINK_MS:-8}
SERVER_CPUS=${SERVER_CPUS:-0}
WRK_CPUS=${WRK_CPUS:-1}
BROKER_CPUS=${BROKER_CPUS:-$WRK_CPUS}
BROKER_SCHED=${BROKER_SCHED:-idle}
WORK=${WORK:-/var/tmp/movrek/bench-impressions}
PORT=${MOVREK_PORT:-18183}
mkdir -p "$WORK"
BROKER_DIR=$WORK/broker

case $BROKER_SCHED in
    idle) BROKER_RUN=(chrt --idle 0 taskset -c "$BROKER_CPUS") ;;
    normal) BROKER_RUN=(taskset -c "$BROKER_CPUS") ;;
    *) echo "BROKER_SCHED must be idle or normal, not '$BROKER_SCHED'" >&2; exit 2 ;;
esac
log() { printf '[impressions.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    "$ROOT/hack/kafka/down" "$BROKER_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT

command -v wrk >/dev/null || die "wrk is missing (bench/http.sh installs it)"
log "building movrek (release)"
cargo build --release -q -p movrek-inference --bin movrek --manifest-path "$ROOT/Cargo.toml" >&2
MOVREK=${CARGO_TARGET_DIR:-$ROOT/target}/release/movrek
"$ROOT/hack/kafka/build.sh" >&2
BROKER=$("${BROKER_RUN[@]}" "$ROOT/hack/kafka/up" "$BROKER_DIR" | tail -n1)
log "broker $BROKER"

if [ ! -d "$DATA" ]; then
    DATA=$WORK/synthetic-mls
    [ -f "$DATA/ratings.dat" ] ||
        "$MOVREK" generate --users 671 --movies 9066 --ratings 100004 --seed 7 --out "$DATA" >&2
fi
USERS=671
"$MOVREK" train --data "$DATA" --out "$WORK/model.movrek" --version bench >/dev/null 2>"$WORK/train.log" \
    || { cat "$WORK/train.log" >&2; die "training failed"; }

wait_ready() {
    local i
    for ((i = 0; i < 600; i++)); do
        curl -fs -o /dev/null "http://127.0.0.1:$PORT/readyz" && return 0
        sleep 0.1
    done
    die "movrek did not become ready"
}

start_movrek() { # label [brokers]
    MOVREK_LOG="info,movrek::request=off" MOVREK_KAFKA_BROKERS=${2:-} taskset -c "$SERVER_CPUS" \
        "$MOVREK" serve --model "$WORK/model.movrek" --bind 127.0.0.1 --port "$PORT" --threads 1 \
        --release bench --track stable 2>"$WORK/movrek-$1.log" &
    MOVREK_PID=$!
    PIDS+=("$MOVREK_PID")
    wait_ready
}

stop_movrek() {
    kill -TERM "$MOVREK_PID"
    wait "$MOVREK_PID" || die "movrek did not exit 0 on SIGTERM"
    PIDS=("${PIDS[@]/$MOVREK_PID/}")
}

run_wrk() { # duration label [connections think_ms] -> the WRK_RESULT line
    WRK_USERS=$USERS WRK_THINK_MS=${4:-} taskset -c "$WRK_CPUS" wrk -t"$THREADS" -c"${3:-$CONNS}" \
        -d"$1" --timeout 10s -s "$ROOT/bench/http/users.lua" "http://127.0.0.1:$PORT" >"$WORK/wrk-$2.txt"
    grep '^WRK_RESULT' "$WORK/wrk-$2.txt" | sed "s/^WRK_RESULT/$2/"
}

# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICKS_PER_SEC=$(getconf CLK_TCK)

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
metric() { # name [reason] -> value from /metrics
    curl -fs "http://127.0.0.1:$PORT/metrics" |
        awk -v n="$1" -v r="${2:-}" '$1 ~ "^"n"[{]" && (r == "" || index($1, "reason=\""r"\"")) { print $2 }'
}

declare -A RPS P99 CPU_US PACED_RPS PACED_P99
for side in off on; do RPS[$side]=0; P99[$side]=0; CPU_US[$side]=0; PACED_RPS[$side]=0; PACED_P99[$side]=0; done
PAIRED_P99=() # per round: paced p99 on - off, in us
declare -A round_p99
for ((round = 1; round <= ROUNDS; round++)); do
    order="off on"
    ((round % 2)) || order="on off" # ABBA: a drift over the run hits both sides alike
    for side in $order; do
        brokers=""
        [ "$side" = on ] && brokers=$BROKER
        start_movrek "$side-$round" "$brokers"
        run_wrk 3s warmup >/dev/null
        ticks0=$(cpu_ticks "$MOVREK_PID")
        line=$(run_wrk "$DURATION" "$side-$round")
        ticks1=$(cpu_ticks "$MOVREK_PID")
        cpu_us=$(awk -v t=$((ticks1 - ticks0)) -v hz="$TICKS_PER_SEC" -v n="$(field "$line" requests)" \
            'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
        log "$line cpu_us_per_request=$cpu_us"
        [ "$(field "$line" non2xx)" = 0 ] || die "non-2xx answers in $line"
        if [ "$side" = on ]; then
            log "impressions: queued $(metric movrek_impressions_queued_total), delivered $(metric movrek_impressions_delivered_total), dropped queue_full $(metric movrek_impressions_dropped_total queue_full) failed $(metric movrek_impressions_dropped_total failed)"
        fi
        paced=$(run_wrk "$DURATION" "paced-$side-$round" "$PACED_CONNS" "$THINK_MS")
        log "$paced"
        [ "$(field "$paced" non2xx)" = 0 ] || die "non-2xx answers in $paced"
        stop_movrek
        PACED_RPS[$side]=$(awk -v a="${PACED_RPS[$side]}" -v b="$(field "$paced" rps)" 'BEGIN { print a + b }')
        PACED_P99[$side]=$(awk -v a="${PACED_P99[$side]}" -v b="$(field "$paced" p99_us)" 'BEGIN { print a + b }')
        round_p99[$side]=$(field "$paced" p99_us)
        RPS[$side]=$(awk -v a="${RPS[$side]}" -v b="$(field "$line" rps)" 'BEGIN { print a + b }')
        P99[$side]=$(awk -v a="${P99[$side]}" -v b="$(field "$line" p99_us)" 'BEGIN { print a + b }')
        CPU_US[$side]=$(awk -v a="${CPU_US[$side]}" -v b="$cpu_us" 'BEGIN { print a + b }')
    done
    PAIRED_P99+=($((round_p99[on] - round_p99[off])))
done

log "outage: wrk ${OUTAGE_SECONDS}s, broker down from $((OUTAGE_SECONDS / 3)) s to $((2 * OUTAGE_SECONDS / 3)) s"
start_movrek outage "$BROKER"
run_wrk "${OUTAGE_SECONDS}s" outage >"$WORK/outage.line" &
WRK_PID=$!
PIDS+=("$WRK_PID")
sleep $((OUTAGE_SECONDS / 3))
"$ROOT/hack/kafka/down" "$BROKER_DIR" >&2
sleep $((OUTAGE_SECONDS / 3))
"${BROKER_RUN[@]}" "$ROOT/hack/kafka/up" "$BROKER_DIR" >/dev/null
wait "$WRK_PID"
OUTAGE=$(cat "$WORK/outage.line")
for ((i = 0; i < 60; i++)); do # let the queue drain into the restarted broker (30 s at most)
    [ "$(metric movrek_impressions_in_flight)" = 0 ] && break
    sleep 0.5
done
QUEUED=$(metric movrek_impressions_queued_total)
DELIVERED=$(metric movrek_impressions_delivered_total)
FULL=$(metric movrek_impressions_dropped_total queue_full)
FAILED=$(metric movrek_impressions_dropped_total failed)
INFLIGHT=$(metric movrek_impressions_in_flight)
stop_movrek

awk -v ron="${RPS[on]}" -v roff="${RPS[off]}" -v pon="${P99[on]}" -v poff="${P99[off]}" -v n="$ROUNDS" \
    -v con="${CPU_US[on]}" -v coff="${CPU_US[off]}" \
    -v pron="${PACED_RPS[on]}" -v proff="${PACED_RPS[off]}" -v ppon="${PACED_P99[on]}" -v ppoff="${PACED_P99[off]}" \
    -v pc="$PACED_CONNS" -v think="$THINK_MS" \
    -v load="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
    printf "impressions off: %.0f req/s, p99 %.0f us, server CPU %.2f us/request (mean of %d rounds)\n", roff / n, poff / n, coff / n, n
    printf "impressions on:  %.0f req/s, p99 %.0f us, server CPU %.2f us/request\n", ron / n, pon / n, con / n
    printf "paced (%d connections, %d ms think time), off: %.0f req/s, p99 %.0f us; on: %.0f req/s, p99 %.0f us\n", pc, think, proff / n, ppoff / n, pron / n, ppon / n
    printf "cost: throughput %+.1f%%, p99 %+.0f us, server CPU per request %+.1f%% (%+.2f us) (load average %s)\n", (ron / roff - 1) * 100, (pon - poff) / n, (con / coff - 1) * 100, (con - coff) / n, load
}'
sorted=$(printf '%s\n' "${PAIRED_P99[@]}" | sort -n | tr '\n' ' ')
echo "paced p99 on - off per round (us, sorted): $sorted(median $(printf '%s\n' "${PAIRED_P99[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'))"
echo "broker outage under load: $(field "$OUTAGE" requests) requests, non-2xx $(field "$OUTAGE" non2xx), socket errors $(($(field "$OUTAGE" connect_err) + $(field "$OUTAGE" read_err) + $(field "$OUTAGE" write_err) + $(field "$OUTAGE" timeouts))), p99 $(field "$OUTAGE" p99_us) us; impressions queued $QUEUED, delivered $DELIVERED, dropped queue_full $FULL, failed $FAILED, still in flight $INFLIGHT"
