#!/usr/bin/env bash
# The server's adversarial suite and hardening figures (issue 7), in one run, loopback only,
# every load bounded in count and time. Hostile and measuring clients are
# bench/hardening/adversary.py (Python standard library); throughput uses wrk like
# bench/http.sh.
#
# Usage: bench/hardening.sh [SECTION...]
#   forms       every method, CONNECT, OPTIONS *, malformed lines and heads, 200 half-closed
#               requests; stderr lines outside the JSON log (with RUST_BACKTRACE=1)
#   slow        500 trickling + 100 silent + 100 idle keep-alive connections: descriptors and
#               connections still open after 13 s
#   fdlimit     server under `ulimit -n 1024`, 1,100 silent connections reopened whenever
#               closed, good client 300 requests on fresh connections: success rate
#   sigterm     SIGTERM with 50 half-sent requests, 200 silent connections and load: time to
#               exit (goal <= drain period + 1 s)
#   overload    open-loop /recommend at 1x and 4x capacity (one compute thread, 4 ms of model
#               CPU per request via MOVREK_FAULT_CPU_US) plus a /healthz prober; pool vs
#               inline (--model-threads 0)
#   rolling     nginx in front of two servers, rolling restart the Kubernetes way (SIGTERM
#               and endpoint removal together, nginx learns 1 s later), load through nginx:
#               requests lost, with nginx retries as ingress-nginx has them and with none
#   flood       the issue's closed loop: wrk -t2 -c4096 for 12 s (default flags, both CPUs)
#               with a /healthz prober on fresh connections: 503 share, /healthz latency
#   throughput  wrk -t2 -c8 like bench/http.sh (server on CPU 0, one worker thread), old and
#               new alternately: throughput ratio
#   (default: all of them)
#
# Environment:
#   MOVREK      binary under test [target/release/movrek, built here]
#   OLD_MOVREK  optional older binary: slow, fdlimit, sigterm, rolling and throughput also run
#               against it (build one with `git worktree add /tmp/old-main <commit>` and
#               `CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p movrek-inference`)
#   WORK        [/var/tmp/movrek/bench-hardening]   DURATION [10s] wrk duration per side
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/movrek/bench-hardening}
DURATION=${DURATION:-10s}
ADV=(python3 "$ROOT/bench/hardening/adversary.py")
mkdir -p "$WORK"
log() { printf '[hardening.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ -z "${MOVREK:-}" ]; then
    log "building movrek (release)"
    cargo build --release -q -p movrek-inference --bin movrek --manifest-path "$ROOT/Cargo.toml" >&2
    MOVREK=${CARGO_TARGET_DIR:-$ROOT/target}/release/movrek
fi
BINS=("new:$MOVREK")
[ -n "${OLD_MOVREK:-}" ] && BINS+=("old:$OLD_MOVREK")

# Same synthetic shape as bench/http.sh without ml-latest-small: 671 users x 9,066 movies.
if [ ! -f "$WORK/model.movrek" ]; then
    "$MOVREK" generate --users 671 --movies 9066 --ratings 100004 --seed 7 --out "$WORK/data" >/dev/null 2>&1
    "$MOVREK" train --data "$WORK/data" --out "$WORK/model.movrek" --version bench >/dev/null 2>"$WORK/train.log"
fi

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    if [ -f "$WORK/nginx/nginx.pid" ]; then kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

port=18400
next_port() { port=$((port + 1)); } # sets $port (no subshell, so the counter advances)

wait_ready() { # port seconds
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        curl -fs -o /dev/null "http://127.0.0.1:$1/readyz" && return 0
        sleep 0.05
    done
    return 1
}

# start BIN PORT LOGNAME [prefix command...] [-- serve args...]: sets SRV (pid).
start() {
    local bin=$1 p=$2 name=$3
    shift 3
    MOVREK_LOG=${MOVREK_LOG_LEVEL:-warn} "$@" "$bin" serve --model "$WORK/model.movrek" \
        --bind 127.0.0.1 --port "$p" "${SERVE_ARGS[@]}" 2>"$WORK/$name.log" &
    SRV=$!
    PIDS+=("$SRV")
    wait_ready "$p" 30 || die "$name did not become ready (see $WORK/$name.log)"
}
SERVE_ARGS=()

stop() { # pid: SIGTERM, then SIGKILL after 30 s; prints seconds to exit
    local pid=$1 t0 i
    t0=$(date +%s.%N)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
        echo "not-exited-after-30s(SIGKILL)"
    else
        awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'
    fi
    wait "$pid" 2>/dev/null || true
}

fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

section() { echo; echo "== $*"; }

run_forms() {
    local entry label bin p
    for entry in "${BINS[@]}"; do
        label=${entry%%:*} bin=${entry#*:}
        section "forms: methods, request forms, malformed input, half-close ($label, RUST_BACKTRACE=1)"
        next_port; p=$port
        MOVREK_LOG_LEVEL=info start "$bin" "$p" "forms-$label" env RUST_BACKTRACE=1
        timeout 120 "${ADV[@]}" forms "127.0.0.1:$p" --half-close 200 | sed 's/^/  /'
        curl -s "http://127.0.0.1:$p/metrics" | grep -E '^movrek_requests_total\{.*route="other"' \
            | sed 's/^.*route=/  counted: route=/' || true
        echo "  exit after SIGTERM: $(stop "$SRV") s"
        echo "  stderr lines that are not JSON log lines: $(grep -vc '^{' "$WORK/forms-$label.log" || true)," \
            "bytes: $(grep -v '^{' "$WORK/forms-$label.log" | wc -c)"
    done
}

run_slow() {
    local entry label bin p
    for entry in "${BINS[@]}"; do
        label=${entry%%:*} bin=${entry#*:}
        section "slow: 500 trickling + 100 silent + 100 idle keep-alive connections ($label)"
        next_port; p=$port
        start "$bin" "$p" "slow-$label"
        echo "  descriptors before: $(fds "$SRV")"
        timeout 60 "${ADV[@]}" hold "127.0.0.1:$p" --n 500 --mode trickle --seconds 13 &
        local a=$!
        timeout 60 "${ADV[@]}" hold "127.0.0.1:$p" --n 100 --mode silent --seconds 13 &
        local b=$!
        timeout 60 "${ADV[@]}" hold "127.0.0.1:$p" --n 100 --mode idle --seconds 13 &
        local c=$!
        sleep 3
        echo "  descriptors at 3 s: $(fds "$SRV")"
        sleep 9
        echo "  descriptors at 12 s: $(fds "$SRV")"
        wait "$a" "$b" "$c" || true
        echo "  exit after SIGTERM: $(stop "$SRV") s"
    done
}

run_fdlimit() {
    local entry label bin p i
    for entry in "${BINS[@]}"; do
        label=${entry%%:*} bin=${entry#*:}
        section "fdlimit: ulimit -n 1024, 1,100 silent connections reopened when closed ($label)"
        next_port; p=$port
        start "$bin" "$p" "fdlimit-$label" bash -c 'ulimit -n 1024 && exec "$@"' fd
        rm -f "$WORK/hostile.ready"
        timeout 90 "${ADV[@]}" hold "127.0.0.1:$p" --n 1100 --mode silent --seconds 60 --reconnect \
            --ready-file "$WORK/hostile.ready" >"$WORK/hostile.out" &
        local h=$!
        for ((i = 0; i < 300; i++)); do [ -f "$WORK/hostile.ready" ] && break; sleep 0.1; done
        sleep 1
        echo "  hostile connections opened before the good client starts: $(cat "$WORK/hostile.ready" 2>/dev/null)"
        echo "  descriptors of the server: $(fds "$SRV") (limit 1024)"
        timeout 60 "${ADV[@]}" probe "127.0.0.1:$p" --requests 300 --interval 0.02 --timeout 2 --budget 30 \
            | sed 's/^/  good client: /'
        echo "  descriptors of the server after: $(fds "$SRV")"
        kill "$h" 2>/dev/null || true
        wait "$h" 2>/dev/null || true
        echo "  accept errors logged: $(grep -c 'accept' "$WORK/fdlimit-$label.log" || true)"
        echo "  exit after SIGTERM: $(stop "$SRV") s"
    done
}

run_sigterm() {
    local entry label bin p
    for entry in "${BINS[@]}"; do
        label=${entry%%:*} bin=${entry#*:}
        section "sigterm: 50 half-sent requests + 200 silent connections + load ($label; drain period 5 s where supported)"
        next_port; p=$port
        start "$bin" "$p" "sigterm-$label"
        timeout 60 "${ADV[@]}" hold "127.0.0.1:$p" --n 50 --mode trickle --seconds 40 >/dev/null &
        local a=$!
        timeout 60 "${ADV[@]}" hold "127.0.0.1:$p" --n 200 --mode silent --seconds 40 >/dev/null &
        local b=$!
        # Load from before the signal until well inside the 5 s drain period: a server that
        # drains answers all of it.
        timeout 60 "${ADV[@]}" steady "127.0.0.1:$p" --seconds 6 --workers 8 | sed 's/^/  load: /' &
        local c=$!
        sleep 3
        echo "  time from SIGTERM to exit: $(stop "$SRV") s"
        wait "$c" || true
        kill "$a" "$b" 2>/dev/null || true
        wait "$a" "$b" 2>/dev/null || true
    done
}

run_overload() {
    section "overload: 4 ms model CPU per request (MOVREK_FAULT_CPU_US=4000), --threads 1 (new binary)"
    local p line cap rate
    # Capacity: what one compute thread serves per second when saturated (1,000 req/s offered).
    next_port; p=$port
    SERVE_ARGS=(--model-threads 1 --threads 1)
    start "$MOVREK" "$p" overload-cap env MOVREK_FAULT_CPU_US=4000
    line=$(timeout 120 "${ADV[@]}" openloop "127.0.0.1:$p" --rate 1000 --seconds 10 --workers 300)
    echo "  saturation, 1000 req/s: ${line#RESULT }"
    cap=$(sed -n 's/.* ok=\([0-9]*\) .*/\1/p' <<<"$line")
    cap=$((cap / 10))
    rate=$((cap * 4))
    echo "  capacity: $cap req/s served; 4x capacity: $rate req/s"
    line=$(timeout 120 "${ADV[@]}" openloop "127.0.0.1:$p" --rate "$rate" --seconds 10 --workers 300)
    echo "  pool, queue wait <= 50 ms (default), $rate req/s: ${line#RESULT }"
    stop "$SRV" >/dev/null
    next_port; p=$port
    SERVE_ARGS=(--model-threads 1 --threads 1 --max-queue-wait-ms 10)
    start "$MOVREK" "$p" overload-10ms env MOVREK_FAULT_CPU_US=4000
    line=$(timeout 120 "${ADV[@]}" openloop "127.0.0.1:$p" --rate "$rate" --seconds 10 --workers 300)
    echo "  pool, queue wait <= 10 ms, $rate req/s: ${line#RESULT }"
    stop "$SRV" >/dev/null
    next_port; p=$port
    SERVE_ARGS=(--model-threads 0 --threads 1)
    start "$MOVREK" "$p" overload-inline env MOVREK_FAULT_CPU_US=4000
    line=$(timeout 180 "${ADV[@]}" openloop "127.0.0.1:$p" --rate "$rate" --seconds 10 --workers 300)
    echo "  inline (--model-threads 0, no queue to shed from), $rate req/s: ${line#RESULT }"
    stop "$SRV" >/dev/null
    SERVE_ARGS=()
}

nginx_conf() { # port backends... -> writes $WORK/nginx/nginx.conf ($RETRY: on|off)
    local listen=$1
    shift
    local servers="" b
    for b in "$@"; do servers+="        server 127.0.0.1:$b;"$'\n'; done
    local next="proxy_next_upstream error timeout;"
    [ "$RETRY" = off ] && next="proxy_next_upstream off;"
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream backends {
$servers        keepalive 32;
    }
    server {
        listen 127.0.0.1:$listen;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            $next
        }
    }
}
EOF
}

run_rolling() {
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || die "nginx missing: run hack/deps.sh"
    local NGINX
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    mkdir -p "$WORK/nginx"
    local entry label bin
    for entry in "${BINS[@]}"; do
        label=${entry%%:*} bin=${entry#*:}
        for RETRY in on off; do
            section "rolling restart through nginx ($label, nginx retries $RETRY)"
            local pa pb pn a b
            next_port; pa=$port; next_port; pb=$port; next_port; pn=$port
            start "$bin" "$pa" "roll-$label-a"
            a=$SRV
            start "$bin" "$pb" "roll-$label-b"
            b=$SRV
            nginx_conf "$pn" "$pa" "$pb"
            "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" 2>/dev/null
            sleep 0.5
            timeout 90 "${ADV[@]}" steady "127.0.0.1:$pn" --seconds 22 --workers 8 | sed 's/^/  through nginx: /' &
            local load=$!
            sleep 2
            # Pod A: SIGTERM and endpoint removal together; nginx learns 1 s later.
            stop "$a" >"$WORK/roll-exit-a" &
            local stop_a=$!
            sleep 1
            nginx_conf "$pn" "$pb"
            kill -HUP "$(cat "$WORK/nginx/nginx.pid")"
            local pa2
            next_port; pa2=$port
            start "$bin" "$pa2" "roll-$label-a2"
            local a2=$SRV
            nginx_conf "$pn" "$pa2" "$pb"
            kill -HUP "$(cat "$WORK/nginx/nginx.pid")"
            sleep 3
            stop "$b" >"$WORK/roll-exit-b" &
            local stop_b=$!
            sleep 1
            nginx_conf "$pn" "$pa2"
            kill -HUP "$(cat "$WORK/nginx/nginx.pid")"
            local pb2
            next_port; pb2=$port
            start "$bin" "$pb2" "roll-$label-b2"
            local b2=$SRV
            nginx_conf "$pn" "$pa2" "$pb2"
            kill -HUP "$(cat "$WORK/nginx/nginx.pid")"
            wait "$load" || true
            wait "$stop_a" "$stop_b" || true
            echo "  old pods exited after SIGTERM in $(cat "$WORK/roll-exit-a") s and $(cat "$WORK/roll-exit-b") s"
            kill "$(cat "$WORK/nginx/nginx.pid")"
            sleep 0.3
            stop "$a2" >/dev/null
            stop "$b2" >/dev/null
        done
    done
}

run_flood() {
    command -v wrk >/dev/null || die "wrk missing (bench/http.sh installs it)"
    ulimit -n 20000 2>/dev/null || true
    local entry label bin p line
    for entry in "${BINS[@]}"; do
        label=${entry%%:*} bin=${entry#*:}
        section "flood: wrk -t2 -c4096 12 s closed loop + /healthz every 50 ms ($label)"
        next_port; p=$port
        MOVREK_LOG_LEVEL="info,movrek::request=off" start "$bin" "$p" "flood-$label"
        WRK_USERS=671 timeout 40 wrk -t2 -c4096 -d12s --timeout 10s -s "$ROOT/bench/http/users.lua" \
            "http://127.0.0.1:$p" >"$WORK/wrk-flood-$label.txt" 2>&1 &
        local w=$!
        sleep 2
        timeout 30 "${ADV[@]}" probe "127.0.0.1:$p" --requests 150 --interval 0.05 --timeout 5 \
            --budget 9 --paths /healthz | sed 's/^/  \/healthz: /'
        wait "$w" || true
        line=$(grep '^WRK_RESULT' "$WORK/wrk-flood-$label.txt" || true)
        echo "  wrk: ${line#WRK_RESULT }"
        stop "$SRV" >/dev/null
    done
}

run_throughput() {
    command -v wrk >/dev/null || die "wrk missing (bench/http.sh installs it)"
    section "throughput: wrk -t2 -c8 $DURATION, server on CPU 0 with one worker thread, wrk on CPU 1"
    local round entry label bin p line variants=()
    # new: default (one compute thread on the pinned CPU); new-inline: --model-threads 0, the
    # same single thread as the old binary (under CPU contention a second thread alone earns
    # the process a larger CPU share, so both are shown).
    variants=("new:$MOVREK:" "new-inline:$MOVREK:--model-threads 0")
    [ -n "${OLD_MOVREK:-}" ] && variants+=("old:$OLD_MOVREK:")
    for round in 1 2; do
        for entry in "${variants[@]}"; do
            IFS=: read -r label bin extra <<<"$entry"
            next_port; p=$port
            # shellcheck disable=SC2206
            SERVE_ARGS=(--threads 1 $extra)
            MOVREK_LOG_LEVEL="info,movrek::request=off" start "$bin" "$p" "wrk-$label" taskset -c 0 env --
            WRK_USERS=671 taskset -c 1 wrk -t2 -c8 -d3s -s "$ROOT/bench/http/users.lua" "http://127.0.0.1:$p" >/dev/null
            line=$(WRK_USERS=671 taskset -c 1 wrk -t2 -c8 -d"$DURATION" --timeout 10s -s "$ROOT/bench/http/users.lua" \
                "http://127.0.0.1:$p" | grep '^WRK_RESULT')
            echo "  round $round $label: ${line#WRK_RESULT }"
            stop "$SRV" >/dev/null
        done
    done
    SERVE_ARGS=()
}

SECTIONS=("$@")
[ ${#SECTIONS[@]} -eq 0 ] && SECTIONS=(forms slow fdlimit sigterm overload flood rolling throughput)
echo "hardening suite: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); binaries: ${BINS[*]}"
for s in "${SECTIONS[@]}"; do
    case $s in
        forms | slow | fdlimit | sigterm | overload | flood | rolling | throughput) "run_$s" ;;
        *) die "unknown section $s" ;;
    esac
done
echo
echo "done; load average $(cut -d' ' -f1-3 /proc/loadavg); logs in $WORK"
