#!/usr/bin/env bash
# The served ranking against learned-weight peers on identical splits, several seeds, with
# the per-user difference and its 95 % interval (issue 13).
#
#   bench/quality.sh [DATA_DIR]        (default data/ml-latest-small)
#
# For each seed: `movrek eval --split-out DIR --per-user-out DIR/movrek.csv` (the served
# ranking, user-kNN's KNNBasic order and popularity), then the peers of bench/peers/rank.py
# on the split it wrote (EASE^R dense over every movie, `implicit`'s ALS, popularity; each
# tuned on a validation split carved from train), then bench/peers/paired.py: served minus
# each, per user, per seed and over seeds.
#
# Environment: SEEDS ["42 1 2"]; PEERS ["ease,als,popularity"]; VARIANTS: space-separated
#   NAME=PARAMS.json, each an extra served ranking trained with `movrek eval --params`
#   (e.g. "unbudgeted=/tmp/nobudget.json" with {"ease_request_budget": 1000000000});
#   MAX_RANKING_USERS: rank for at most this many test users in `movrek eval` (a seeded
#   sample; the peers rank every test user and the pairing keeps the sampled ones);
#   MOVREK_CACHE [/var/cache/movrek] holds the peers' venv (numpy, scipy, implicit);
#   WORK [/var/tmp/movrek/quality].
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${1:-$ROOT/data/ml-latest-small}
SEEDS=${SEEDS:-42 1 2}
PEERS=${PEERS:-ease,als,popularity}
VARIANTS=${VARIANTS:-}
CAP=()
[ -z "${MAX_RANKING_USERS:-}" ] || CAP=(--max-ranking-users "$MAX_RANKING_USERS")
CACHE=${MOVREK_CACHE:-/var/cache/movrek}
VENV=$CACHE/venv-peers
WORK=${WORK:-/var/tmp/movrek/quality}
log() { printf '[quality.sh] %s\n' "$*" >&2; }

[ -d "$DATA" ] || { log "no data set at $DATA (hack/movielens.sh fetches ml-latest-small)"; exit 1; }
if ! "$VENV/bin/python" -c 'import numpy, scipy, implicit' 2>/dev/null; then
    log "creating the peers' venv in $VENV (numpy, scipy, implicit from PyPI)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check numpy scipy implicit >&2
fi
PY=$VENV/bin/python
log "building movrek (release)"
cargo build --release -q -p movrek-inference --bin movrek --manifest-path "$ROOT/Cargo.toml" >&2
MOVREK=${CARGO_TARGET_DIR:-$ROOT/target}/release/movrek

summary() { "$PY" "$ROOT/bench/peers/summary.py" "$2" "$1"; }

CSVS=()
for seed in $SEEDS; do
    dir=$WORK/$seed
    mkdir -p "$dir"
    log "seed $seed: movrek eval"
    "$MOVREK" eval --data "$DATA" --seed "$seed" "${CAP[@]}" --split-out "$dir" --per-user-out "$dir/movrek.csv" \
        --json >"$dir/movrek.json" 2>"$dir/movrek.err" || { cat "$dir/movrek.err" >&2; exit 1; }
    summary "$dir/movrek.json" "seed $seed  "
    files=("$dir/movrek.csv")
    for variant in $VARIANTS; do
        name=${variant%%=*}
        params=${variant#*=}
        log "seed $seed: movrek eval, variant $name ($params)"
        "$MOVREK" eval --data "$DATA" --seed "$seed" "${CAP[@]}" --params "$params" --per-user-out "$dir/$name.raw.csv" \
            --json >"$dir/$name.json" 2>"$dir/$name.err" || { cat "$dir/$name.err" >&2; exit 1; }
        summary "$dir/$name.json" "seed $seed  $name: " | head -n1
        awk -F, -v name="served-$name" 'NR == 1 { print; next } $1 == "served" { $1 = name; print }' OFS=, \
            "$dir/$name.raw.csv" >"$dir/$name.csv"
        files+=("$dir/$name.csv")
    done
    log "seed $seed: peers ($PEERS)"
    "$PY" "$ROOT/bench/peers/rank.py" "$dir" --algo "$PEERS" --seed "$seed" >"$dir/peers.json"
    summary "$dir/peers.json" "seed $seed  "
    for algo in ${PEERS//,/ }; do files+=("$dir/peer-$algo.csv"); done
    # One file per seed: the paired comparison pairs users within a file only.
    awk 'FNR == 1 && NR != 1 { next } { print }' "${files[@]}" >"$dir/all.csv"
    CSVS+=("$dir/all.csv")
done
"$PY" "$ROOT/bench/peers/paired.py" served "${CSVS[@]}"
for variant in $VARIANTS; do
    "$PY" "$ROOT/bench/peers/paired.py" "served-${variant%%=*}" "${CSVS[@]}"
done
