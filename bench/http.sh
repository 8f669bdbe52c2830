#!/usr/bin/env bash
# HTTP benchmark, in ONE run, every server pinned to the same CPUs and driven by the same wrk
# over loopback with a Lua script that spreads requests over every user id
# (bench/http/users.lua):
#   - `movrek serve` as a pod runs it: request log lines on (JSON, to a file), /metrics
#     counting, and impressions published to a real Kafka broker (hack/kafka; the broker runs
#     on wrk's CPUs under SCHED_IDLE, as in bench/impressions.sh), with its per-user memo of
#     answers on (every user is asked for many times, so nearly every answer is a memo hit);
#   - the same with the memo off (MOVREK_MEMO_MIB=0): every request runs the model, as the
#     first request of each user does;
#   - the same with request logs off (MOVREK_LOG=info,movrek::request=off), so the cost of
#     logging is visible;
#   - nginx (one worker, access log on and buffered) answering every /recommend/{id} with a
#     fixed body and headers of the same size as movrek's 20-id answer: the floor of an HTTP
#     answer on this core (bench/http/nginx.conf);
#   - optionally the original system's peer (Flask + gunicorn 2 workers + Surprise KNNBasic
#     cosine k=40 predicting every unrated movie, top 20, bench/http/peer_app.py).
# The capacity sides run ROUNDS times, alternating their order (ABBA), so drift on a shared
# machine hits every side alike; the report gives per-side means, per-round values and the
# server CPU time per request (utime + stime over the run / requests answered). Then a paced
# phase: a closed loop with think time (WRK_THINK_MS in users.lua) whose connection count is
# calibrated so that the offered rate is about half of movrek's measured capacity; its p99 is
# the latency figure (a p99 at saturation measures the queue, not the server).
#
# Usage: bench/http.sh [DATA_DIR]
#   DATA_DIR defaults to data/ml-latest-small (made by hack/movielens.sh); when it does not
#   exist a synthetic set of the same shape (671 users × 9,066 movies × 100,004 ratings) is
#   generated instead, and the output says so.
#
# Environment (defaults in brackets):
#   DURATION [15s]       wrk duration of each capacity measurement; ROUNDS [3]
#   PACED_DURATION [15s] each paced measurement; PACED_ROUNDS [2]; THINK_MS [2]
#   THREADS [2] CONNS [8] wrk threads and connections (same for every side)
#   KAFKA [on]           on | off: publish impressions to a local broker
#   PEER [off]           on: also measure the Flask+Surprise peer (PEER_DURATION [30s])
#   SERVER_CPUS [0]      CPU list every server under test is pinned to
#   WRK_CPUS [1]         CPU list wrk (and the broker) is pinned to
#   MOVREK_CACHE [/var/cache/movrek]  holds the shared Surprise venv (venv-surprise)
#   WORK [/var/tmp/movrek/bench-http]  model, logs, nginx config and result.json
#   BENCH_PRIO [normal]  normal | nice: run servers and wrk at nice -20 (every side alike),
#                        so other work on a shared machine (compilers) barely preempts them
#                        | fifo: SCHED_FIFO 10 (beware: RT throttling stalls a saturated core
#                        for 50 ms every second, which shows up in p99). Printed with results.
# Everything listens on 127.0.0.1; every process started here is stopped by pid at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${1:-$ROOT/data/ml-latest-small}
DURATION=${DURATION:-15s}
ROUNDS=${ROUNDS:-3}
PACED_DURATION=${PACED_DURATION:-15s}
PACED_ROUNDS=${PACED_ROUNDS:-2}
THINK_MS=${THINK_MS:-2}
PEER=${PEER:-off}
PEER_DURATION=${PEER_DURATION:-30s}
KAFKA=${KAFKA:-on}
THREADS=${THREADS:-2}
CONNS=${CONNS:-8}
SERVER_CPUS=${SERVER_CPUS:-0}
WRK_CPUS=${WRK_CPUS:-1}
CACHE=${MOVREK_CACHE:-/var/cache/movrek}
VENV=$CACHE/venv-surprise
WORK=${WORK:-/var/tmp/movrek/bench-http}
BENCH_PRIO=${BENCH_PRIO:-normal}
case $BENCH_PRIO in
    normal) PRIO=() ;;
    nice) PRIO=(nice -n -20) ;;
    fifo) PRIO=(chrt -f 10) ;;
    *) echo "BENCH_PRIO must be normal, nice or fifo" >&2; exit 2 ;;
esac
case $KAFKA in on | off) ;; *) echo "KAFKA must be on or off" >&2; exit 2 ;; esac
case $PEER in on | off) ;; *) echo "PEER must be on or off" >&2; exit 2 ;; esac
MOVREK_PORT=${MOVREK_PORT:-18182}
NGINX_PORT=${NGINX_PORT:-18184}
PEER_PORT=${PEER_PORT:-18190}
mkdir -p "$WORK"
BROKER_DIR=$WORK/broker

log() { printf '[http.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- helpers -----------------------------------------------------------------------------
PIDS=()
BROKER_STARTED=""
cleanup() {
    for pid in "${PIDS[@]}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -z "$BROKER_STARTED" ] || "$ROOT/hack/kafka/down" "$BROKER_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT

forget_pid() { local pid=$1 i; for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" != "$pid" ] || unset "PIDS[$i]"; done; }

# --- tools -------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    log "installing wrk (apt)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } >&2 \
        || die "wrk is missing and could not be installed"
fi
if ! command -v nginx >/dev/null; then
    log "installing nginx (apt)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; } >&2 \
        || die "nginx is missing and could not be installed"
fi
if [ "$PEER" = on ] && { [ ! -x "$VENV/bin/gunicorn" ] || ! "$VENV/bin/python" -c 'import surprise, flask' 2>/dev/null; }; then
    log "preparing the Surprise venv in $VENV"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    # Same package list as bench/surprise; Surprise's C extension needs numpy < 2.
    "$VENV/bin/pip" install -q "numpy<2" scikit-surprise flask gunicorn >&2
fi
log "building movrek (release)"
cargo build --release -q -p movrek-inference --bin movrek --manifest-path "$ROOT/Cargo.toml" >&2
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MOVREK=$TARGET_DIR/release/movrek

# --- data and model ----------------------------------------------------------------------
DATA_LABEL=$DATA
if [ ! -d "$DATA" ]; then
    DATA=$WORK/synthetic-mls
    DATA_LABEL="synthetic 671×9066×100004 (data/ml-latest-small missing; run hack/movielens.sh)"
    log "no ${1:-data/ml-latest-small}; generating $DATA_LABEL"
    [ -f "$DATA/ratings.dat" ] ||
        "$MOVREK" generate --users 671 --movies 9066 --ratings 100004 --seed 7 --out "$DATA" >&2
fi
if [ -f "$DATA/ratings.csv" ]; then RATINGS=$DATA/ratings.csv
elif [ -f "$DATA/ratings.dat" ]; then RATINGS=$DATA/ratings.dat
else die "$DATA has neither ratings.csv nor ratings.dat (the peer reads one of them)"; fi
USERS=$(awk -F'[,:]' '$1 ~ /^[0-9]+$/ && $1 + 0 > m { m = $1 + 0 } END { print m }' "$RATINGS")
log "data: $DATA_LABEL ($RATINGS, user ids 1..$USERS)"
"$MOVREK" train --data "$DATA" --out "$WORK/model.movrek" --version bench >"$WORK/model.sha256" 2>"$WORK/train.log" \
    || { cat "$WORK/train.log" >&2; die "training failed"; }

BROKERS=""
if [ "$KAFKA" = on ]; then
    "$ROOT/hack/kafka/build.sh" >&2
    BROKER_STARTED=yes
    BROKERS=$(chrt --idle 0 taskset -c "$WRK_CPUS" "$ROOT/hack/kafka/up" "$BROKER_DIR" | tail -n1)
    log "impressions go to the broker at $BROKERS (SCHED_IDLE on CPUs $WRK_CPUS)"
fi

cpu_count() { # number of CPUs in a taskset list such as 0 or 0-1 or 0,2
    local n=0 part
    for part in ${1//,/ }; do
        if [[ $part == *-* ]]; then n=$((n + ${part#*-} - ${part%-*} + 1)); else n=$((n + 1)); fi
    done
    echo "$n"
}

wait_http() { # url seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.1
    done
    return 1
}

run_wrk() { # label url duration timeout [connections think_ms] -> prints the WRK_RESULT line
    local label=$1 url=$2 duration=$3 timeout=$4
    WRK_USERS=$USERS WRK_THINK_MS=${6:-} "${PRIO[@]}" taskset -c "$WRK_CPUS" wrk -t"$THREADS" -c"${5:-$CONNS}" \
        -d"$duration" --timeout "$timeout" -s "$ROOT/bench/http/users.lua" "$url" >"$WORK/wrk-$label.txt"
    grep '^WRK_RESULT' "$WORK/wrk-$label.txt" | sed "s/^WRK_RESULT/$label/"
}

field() { # line key
    sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"
}

# cpu_ticks PID...: user + system CPU time of the processes and their children so far.
cpu_ticks() {
    local total=0 pid child
    for pid in "$@"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
        for child in $(pgrep -P "$pid" || true); do
            total=$((total + $(awk '{ print $14 + $15 }' "/proc/$child/stat")))
        done
    done
    echo "$total"
}
TICKS_PER_SEC=$(getconf CLK_TCK)

SERVER_THREADS=$(cpu_count "$SERVER_CPUS")

# --- servers -------------------------------------------------------------------------------
# Each start_* sets SERVER_PID and SERVER_URL; stop_server stops it.
start_movrek() { # label log-filter memo-mib
    MOVREK_LOG=$2 MOVREK_MEMO_MIB=$3 MOVREK_KAFKA_BROKERS=$BROKERS "${PRIO[@]}" taskset -c "$SERVER_CPUS" \
        "$MOVREK" serve --model "$WORK/model.movrek" --bind 127.0.0.1 --port "$MOVREK_PORT" \
        --threads "$SERVER_THREADS" --release bench --track stable 2>"$WORK/movrek-$1.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    SERVER_URL=http://127.0.0.1:$MOVREK_PORT
    wait_http "$SERVER_URL/readyz" 60 || die "movrek did not become ready"
}

# The nginx side answers with the same body and headers (sizes) as movrek's answer for user 1.
NGINX_DIR=$WORK/nginx
prepare_nginx() {
    start_movrek probe info 64
    curl -fsS -D "$WORK/movrek-answer.head" -o "$WORK/movrek-answer.body" "$SERVER_URL/recommend/1"
    # A broker just started (a JVM not yet compiled) takes records several times slower than
    # a warm one: the first measured round dropped most of its impressions on a full queue
    # while later rounds dropped none. Warm it with the same load first, not measured.
    [ -z "$BROKERS" ] || run_wrk warmup-broker "$SERVER_URL" 15s 10s >/dev/null
    stop_server
    local body impression
    body=$(cat "$WORK/movrek-answer.body")
    impression=$(tr -d '\r' <"$WORK/movrek-answer.head" | sed -n 's/^x-impression-id: //Ip')
    [[ $body =~ ^[0-9]+(,[0-9]+){19}$ ]] || die "movrek's answer is not 20 ids: $body"
    mkdir -p "$NGINX_DIR/logs"
    sed -e "s|@PORT@|$NGINX_PORT|g" -e "s|@BODY@|$body|g" -e "s|@IMPRESSION@|$impression|g" \
        -e "s|@DIR@|$NGINX_DIR|g" "$ROOT/bench/http/nginx.conf" >"$NGINX_DIR/nginx.conf"
    nginx -t -q -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/logs/error.log" \
        || die "nginx rejects $NGINX_DIR/nginx.conf"
}

start_nginx() {
    "${PRIO[@]}" taskset -c "$SERVER_CPUS" nginx -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" \
        -e "$NGINX_DIR/logs/error.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    SERVER_URL=http://127.0.0.1:$NGINX_PORT
    wait_http "$SERVER_URL/recommend/1" 10 || die "nginx did not answer"
}

stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || die "server $SERVER_PID did not exit 0 on SIGTERM"
    forget_pid "$SERVER_PID"
}

start_side() { # side label
    case $1 in
        movrek) start_movrek "$2" info 64 ;;
        uncached) start_movrek "$2" info 0 ;;
        nologs) start_movrek "$2" "info,movrek::request=off" 64 ;;
        nginx) start_nginx ;;
    esac
}

# flushed LOG: "delivered dropped" impressions from a stopped movrek's last log line on them.
flushed() {
    sed -n 's/.*"impressions flushed","delivered":\([0-9]*\),"dropped_queue_full":\([0-9]*\),"dropped_failed":\([0-9]*\).*/\1 \2 \3/p' "$1" |
        awk '{ print $1, $2 + $3 }' | tail -n1
}
add_flushed() { # side log
    local counts
    counts=$(flushed "$2")
    [ -n "$counts" ] || return 0
    DELIVERED[$1]=$((DELIVERED[$1] + ${counts% *}))
    DROPPED[$1]=$((DROPPED[$1] + ${counts#* }))
}

# --- capacity rounds -----------------------------------------------------------------------
SIDES=(movrek nginx uncached nologs)
# NON2XX: 503s are the server shedding load it cannot answer in time (a stalled core on a
# shared machine); they are counted and shown, not hidden.
declare -A RPS P50 P99 CPU_US PER_ROUND DELIVERED DROPPED NON2XX
for side in "${SIDES[@]}" paced; do
    RPS[$side]=0; P50[$side]=0; P99[$side]=0; CPU_US[$side]=0; PER_ROUND[$side]=""; DELIVERED[$side]=0; DROPPED[$side]=0; NON2XX[$side]=0
done
prepare_nginx
log "server on CPUs $SERVER_CPUS ($SERVER_THREADS worker threads), wrk on CPUs $WRK_CPUS, -t$THREADS -c$CONNS; $ROUNDS rounds of $DURATION"
for ((round = 1; round <= ROUNDS; round++)); do
    order=("${SIDES[@]}")
    ((round % 2)) || order=(nologs uncached nginx movrek)
    for side in "${order[@]}"; do
        start_side "$side" "$side-$round"
        run_wrk "warmup-$side" "$SERVER_URL" 3s 10s >/dev/null
        ticks0=$(cpu_ticks "$SERVER_PID")
        line=$(run_wrk "$side-$round" "$SERVER_URL" "$DURATION" 10s)
        ticks1=$(cpu_ticks "$SERVER_PID")
        [ "$side" != movrek ] || curl -fs "$SERVER_URL/metrics" >"$WORK/metrics-$side-$round.txt"
        stop_server
        [ "$side" = nginx ] || add_flushed "$side" "$WORK/movrek-$side-$round.log"
        cpu_us=$(awk -v t=$((ticks1 - ticks0)) -v hz="$TICKS_PER_SEC" -v n="$(field "$line" requests)" \
            'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
        log "$line cpu_us_per_request=$cpu_us"
        NON2XX[$side]=$((NON2XX[$side] + $(field "$line" non2xx)))
        RPS[$side]=$(awk -v a="${RPS[$side]}" -v b="$(field "$line" rps)" 'BEGIN { print a + b }')
        P50[$side]=$(awk -v a="${P50[$side]}" -v b="$(field "$line" p50_us)" 'BEGIN { print a + b }')
        P99[$side]=$(awk -v a="${P99[$side]}" -v b="$(field "$line" p99_us)" 'BEGIN { print a + b }')
        CPU_US[$side]=$(awk -v a="${CPU_US[$side]}" -v b="$cpu_us" 'BEGIN { print a + b }')
        PER_ROUND[$side]+="$(awk -v r="$(field "$line" rps)" 'BEGIN { printf "%.0f", r }') "
    done
done
mean() { awk -v s="$1" -v n="$2" 'BEGIN { printf "%.0f", s / n }'; }
CAPACITY=$(mean "${RPS[movrek]}" "$ROUNDS")

# --- paced phase at about half of movrek's capacity --------------------------------------------
# One closed-loop connection offers about 1000 / (THINK_MS + latency) requests a second; a
# short probe measures what it really offers here (wrk's timers are coarse), then the
# connection count is scaled so that the offered rate is CAPACITY / 2.
TARGET=$((CAPACITY / 2))
start_side movrek paced-probe
probe=$(run_wrk paced-probe "$SERVER_URL" 5s 10s 16 "$THINK_MS")
stop_server
PACED_CONNS=$(awk -v t="$TARGET" -v r="$(field "$probe" rps)" 'BEGIN { c = int(16 * t / r + 0.5); print (c < 1) ? 1 : c }')
log "paced: probe $(field "$probe" rps) req/s on 16 connections; $PACED_CONNS connections with ${THINK_MS} ms think time for ~$TARGET req/s"
declare -A PACED_RPS PACED_P99 PACED_P50 PACED_ROUNDS_P99
for side in movrek nginx; do PACED_RPS[$side]=0; PACED_P99[$side]=0; PACED_P50[$side]=0; PACED_ROUNDS_P99[$side]=""; done
for ((round = 1; round <= PACED_ROUNDS; round++)); do
    order=(movrek nginx)
    ((round % 2)) || order=(nginx movrek)
    for side in "${order[@]}"; do
        start_side "$side" "paced-$side-$round"
        run_wrk "warmup-$side" "$SERVER_URL" 3s 10s >/dev/null
        line=$(run_wrk "paced-$side-$round" "$SERVER_URL" "$PACED_DURATION" 10s "$PACED_CONNS" "$THINK_MS")
        stop_server
        [ "$side" = nginx ] || add_flushed paced "$WORK/movrek-paced-$side-$round.log"
        log "$line"
        NON2XX[paced]=$((NON2XX[paced] + $(field "$line" non2xx)))
        PACED_RPS[$side]=$(awk -v a="${PACED_RPS[$side]}" -v b="$(field "$line" rps)" 'BEGIN { print a + b }')
        PACED_P50[$side]=$(awk -v a="${PACED_P50[$side]}" -v b="$(field "$line" p50_us)" 'BEGIN { print a + b }')
        PACED_P99[$side]=$(awk -v a="${PACED_P99[$side]}" -v b="$(field "$line" p99_us)" 'BEGIN { print a + b }')
        PACED_ROUNDS_P99[$side]+="$(field "$line" p99_us) "
    done
done

# --- peer ----------------------------------------------------------------------------------
PEER_LINE=""
if [ "$PEER" = on ]; then
    log "peer: gunicorn 2 workers on CPUs $SERVER_CPUS (fits KNNBasic first)"
    (cd "$ROOT/bench/http" && PEER_RATINGS=$RATINGS exec "${PRIO[@]}" taskset -c "$SERVER_CPUS" "$VENV/bin/gunicorn" \
        --workers 2 --bind "127.0.0.1:$PEER_PORT" --preload --timeout 300 --log-level warning \
        peer_app:app) 2>"$WORK/peer.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_http "http://127.0.0.1:$PEER_PORT/healthz" 600 || { cat "$WORK/peer.log" >&2; die "peer did not start"; }
    PEER_LINE=$(run_wrk peer "http://127.0.0.1:$PEER_PORT" "$PEER_DURATION" 120s)
    stop_server
fi

# --- report --------------------------------------------------------------------------------
us_to_ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }
label_of() {
    case $1 in
        movrek) echo "movrek (logs, memo)" ;;
        uncached) echo "movrek (logs, no memo)" ;;
        nologs) echo "movrek (no logs, memo)" ;;
        nginx) echo "nginx (fixed answer)" ;;
    esac
}
IMPRESSIONS_LABEL="impressions to Kafka"
[ "$KAFKA" = on ] || IMPRESSIONS_LABEL="impressions NOT published (KAFKA=off)"
echo
echo "HTTP benchmark — data: $DATA_LABEL; wrk -t$THREADS -c$CONNS, $ROUNDS alternating rounds of $DURATION; server CPUs $SERVER_CPUS, wrk CPUs $WRK_CPUS; movrek with metrics and $IMPRESSIONS_LABEL; scheduling: $BENCH_PRIO${PRIO:+ (${PRIO[*]})}; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
dropped_pct() { awk -v d="${DELIVERED[$1]}" -v x="${DROPPED[$1]}" 'BEGIN { if (d + x > 0) printf "%.1f%%", 100 * x / (d + x); else print "-" }'; }
printf '%-24s %10s %9s %9s %11s %12s %7s  %s\n' side "req/s" "p50 ms" "p99 ms" "CPU us/req" "impr. drop" non2xx "req/s per round"
for side in "${SIDES[@]}"; do
    printf '%-24s %10s %9s %9s %11s %12s %7s  %s\n' "$(label_of "$side")" "$(mean "${RPS[$side]}" "$ROUNDS")" \
        "$(us_to_ms "$(mean "${P50[$side]}" "$ROUNDS")")" "$(us_to_ms "$(mean "${P99[$side]}" "$ROUNDS")")" \
        "$(awk -v s="${CPU_US[$side]}" -v n="$ROUNDS" 'BEGIN { printf "%.2f", s / n }')" "$(dropped_pct "$side")" \
        "${NON2XX[$side]}" "${PER_ROUND[$side]}"
done
echo "(impr. drop: impressions dropped because the producer's queue was full, of all answered; counted, never on the request path)"
RATIO=$(ratio "${RPS[movrek]}" "${RPS[nginx]}")
RATIO_UNCACHED=$(ratio "${RPS[uncached]}" "${RPS[nginx]}")
CPU_RATIO=$(ratio "${CPU_US[movrek]}" "${CPU_US[nginx]}")
echo "throughput ratio movrek/nginx: ${RATIO}x (target >= 0.5x); without the memo: ${RATIO_UNCACHED}x; CPU per request movrek/nginx: ${CPU_RATIO}x"
PACED_P99_MS=$(us_to_ms "$(mean "${PACED_P99[movrek]}" "$PACED_ROUNDS")")
echo "paced at ~half of movrek's capacity ($PACED_CONNS connections, ${THINK_MS} ms think time, $PACED_ROUNDS rounds of $PACED_DURATION):"
echo "  movrek: $(mean "${PACED_RPS[movrek]}" "$PACED_ROUNDS") req/s, p50 $(us_to_ms "$(mean "${PACED_P50[movrek]}" "$PACED_ROUNDS")") ms, p99 ${PACED_P99_MS} ms (target <= 1 ms; per round, us: ${PACED_ROUNDS_P99[movrek]}); impressions dropped $(dropped_pct paced); non-2xx (both sides) ${NON2XX[paced]}"
echo "  nginx:  $(mean "${PACED_RPS[nginx]}" "$PACED_ROUNDS") req/s, p50 $(us_to_ms "$(mean "${PACED_P50[nginx]}" "$PACED_ROUNDS")") ms, p99 $(us_to_ms "$(mean "${PACED_P99[nginx]}" "$PACED_ROUNDS")") ms (per round, us: ${PACED_ROUNDS_P99[nginx]})"
if [ -n "$PEER_LINE" ]; then
    echo "peer (Flask+Surprise): $(field "$PEER_LINE" rps) req/s, p99 $(us_to_ms "$(field "$PEER_LINE" p99_us)") ms; movrek/peer $(ratio "$(mean "${RPS[movrek]}" "$ROUNDS")" "$(field "$PEER_LINE" rps)")x"
fi
LAST_METRICS=$WORK/metrics-movrek-$ROUNDS.txt
if [ -f "$LAST_METRICS" ]; then
    echo "movrek's last capacity run: memo hits $(awk '/^movrek_memo_hits_total/ { print $2 }' "$LAST_METRICS"), misses $(awk '/^movrek_memo_misses_total/ { print $2 }' "$LAST_METRICS"); impressions queued $(awk '/^movrek_impressions_queued_total/ { print $2 }' "$LAST_METRICS")"
fi
{
    printf '{"data": "%s", "wrk": {"threads": %s, "connections": %s, "duration": "%s", "rounds": %s},\n' \
        "$DATA_LABEL" "$THREADS" "$CONNS" "$DURATION" "$ROUNDS"
    printf ' "server_cpus": "%s", "wrk_cpus": "%s", "scheduling": "%s", "kafka": "%s",\n' \
        "$SERVER_CPUS" "$WRK_CPUS" "$BENCH_PRIO" "$KAFKA"
    for side in "${SIDES[@]}"; do
        printf ' "%s": {"rps": %s, "p50_us": %s, "p99_us": %s, "cpu_us_per_request": %s},\n' "$side" \
            "$(mean "${RPS[$side]}" "$ROUNDS")" "$(mean "${P50[$side]}" "$ROUNDS")" \
            "$(mean "${P99[$side]}" "$ROUNDS")" "$(awk -v s="${CPU_US[$side]}" -v n="$ROUNDS" 'BEGIN { printf "%.2f", s / n }')"
    done
    printf ' "paced": {"connections": %s, "think_ms": %s, "movrek_rps": %s, "movrek_p99_us": %s, "nginx_rps": %s, "nginx_p99_us": %s},\n' \
        "$PACED_CONNS" "$THINK_MS" "$(mean "${PACED_RPS[movrek]}" "$PACED_ROUNDS")" "$(mean "${PACED_P99[movrek]}" "$PACED_ROUNDS")" \
        "$(mean "${PACED_RPS[nginx]}" "$PACED_ROUNDS")" "$(mean "${PACED_P99[nginx]}" "$PACED_ROUNDS")"
    printf ' "ratio_movrek_nginx": %s, "ratio_uncached_nginx": %s}\n' "$RATIO" "$RATIO_UNCACHED"
} >"$WORK/result.json"
log "details in $WORK (wrk-*.txt, movrek-*.log, nginx/, metrics-*.txt, result.json)"
