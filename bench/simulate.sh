#!/usr/bin/env bash
# Sensitivity of the online score (issue 9): `movrek simulate` drives SESSIONS sessions
# against a real `movrek serve` on 127.0.0.1 per arm, and the closing summary gives each
# arm's mean online score (the online evaluator over the very lines written). Arms:
#   served      known users, answered by the trained model's personal path;
#   popularity  the same users' tastes behind unknown ids (`--unknown-share 1`), answered by
#               the served model's unknown-user path: one non-personal popularity/rating
#               list for everyone. This is the only popularity-only model movrek can serve
#               today (there is no `--algo popularity`); it is labelled as such.
#   random      NOT MEASURED: movrek cannot serve a random-list model.
#   baseline    only with BASELINE_PARAMS=FILE: the same users answered by a model trained
#               on the same data with `movrek train --params FILE` (e.g. the previous
#               default, to measure a new default's online score against it, issue 13).
# For each pair of arms it prints how many scored events per arm separate them at 95 %
# confidence (two-sided two-sample z test: n = 1.96²·(s₁² + s₂²)/Δ², i.e. the n at which
# the observed Δ is just significant) and with 80 % power (1.96 + 0.84 instead of 1.96).
#
# Data sets: a synthetic one (`movrek generate`, hidden latent taste) and, when REAL_DATA
# (default data/ml-latest-small, made by hack/movielens.sh) exists, the real one: the
# model is trained on the training part of the seeded split `movrek eval --seed 42` makes,
# and the held-out part is the simulated users' taste. Real data has no runtimes: every
# movie is taken as 100 min (the online-eval default).
#
# Usage: bench/simulate.sh [REAL_DATA_DIR]
# Environment: SESSIONS [10000] RATE [500] CONCURRENCY [8] WORK [/var/tmp/movrek/bench-simulate]
#              MOVREK [target/release/movrek] BASELINE_PARAMS [unset]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REAL_DATA=${1:-$ROOT/data/ml-latest-small}
SESSIONS=${SESSIONS:-10000}
RATE=${RATE:-500}
CONCURRENCY=${CONCURRENCY:-8}
WORK=${WORK:-/var/tmp/movrek/bench-simulate}
MOVREK=${MOVREK:-$ROOT/target/release/movrek}
BASELINE_PARAMS=${BASELINE_PARAMS:-}
[ -z "$BASELINE_PARAMS" ] || [ -f "$BASELINE_PARAMS" ] ||
    { echo "BASELINE_PARAMS: no file $BASELINE_PARAMS" >&2; exit 2; }
[ -x "$MOVREK" ] || { echo "build first: cargo build --release -p movrek-inference" >&2; exit 1; }
mkdir -p "$WORK"

# shellcheck source=lib/serve.sh
. "$ROOT/bench/lib/serve.sh"
trap stop_server EXIT

# baseline_arm DATA_SET DATA TRAIN_DIR EXTRA...: with BASELINE_PARAMS, trains the baseline
# model on TRAIN_DIR and runs arm DATA_SET-baseline against it (the served arm's users).
baseline_arm() {
    local set=$1 data=$2 train=$3
    shift 3
    [ -n "$BASELINE_PARAMS" ] || return 0
    "$MOVREK" train --data "$train" --out "$WORK/$set-baseline.movrek" \
        --version "$set-baseline" --params "$BASELINE_PARAMS" >/dev/null 2>&1
    start_server "$WORK/$set-baseline.movrek" "$WORK/$set-baseline-serve.log"
    arm "$set-baseline" "$data" "$@"
    stop_server
    ARMS="$ARMS $set-baseline"
}

# arm NAME DATA EXTRA...: one bounded simulation; writes $WORK/NAME.json and NAME.log.
arm() {
    local name=$1 data=$2
    shift 2
    "$MOVREK" simulate --target "$URL" --data "$data" --count "$SESSIONS" --rate "$RATE" \
        --concurrency "$CONCURRENCY" --seed 1 --start 2024-05-01T00:00:00 \
        --malformed-share 0 --burst-share 0 --quiet \
        --sink "file:$WORK/$name.log" --summary-json "$WORK/$name.json" "$@" \
        2>"$WORK/$name.stderr"
}

# Synthetic: the default generator shape (2,000 users × 1,000 movies × 100,000 ratings).
"$MOVREK" generate --out "$WORK/synth" 2>/dev/null
"$MOVREK" train --data "$WORK/synth" --out "$WORK/synth.movrek" --version synth-v1 >/dev/null 2>&1
start_server "$WORK/synth.movrek" "$WORK/synth-serve.log"
arm synth-served "$WORK/synth" --unknown-share 0
arm synth-popularity "$WORK/synth" --unknown-share 1
stop_server

ARMS="synth-served synth-popularity"
baseline_arm synth "$WORK/synth" "$WORK/synth" --unknown-share 0
if [ -f "$REAL_DATA/ratings.csv" ]; then
    rm -rf "$WORK/real-split" "$WORK/real-train"
    "$MOVREK" eval --data "$REAL_DATA" --seed 42 --max-ranking-users 1 \
        --split-out "$WORK/real-split" --json >/dev/null 2>&1
    mkdir -p "$WORK/real-train"
    cp "$WORK/real-split/train.csv" "$WORK/real-train/ratings.csv"
    cp "$REAL_DATA/movies.csv" "$WORK/real-train/movies.csv"
    "$MOVREK" train --data "$WORK/real-train" --out "$WORK/real.movrek" --version real-v1 >/dev/null 2>&1
    start_server "$WORK/real.movrek" "$WORK/real-serve.log"
    arm real-served "$REAL_DATA" --unknown-share 0 --split-seed 42
    arm real-popularity "$REAL_DATA" --unknown-share 1 --split-seed 42
    stop_server
    ARMS="$ARMS real-served real-popularity"
    baseline_arm real "$REAL_DATA" "$WORK/real-train" --unknown-share 0 --split-seed 42
else
    echo "no $REAL_DATA/ratings.csv: real-data arms skipped (hack/movielens.sh makes it)" >&2
fi

WORK="$WORK" SESSIONS="$SESSIONS" python3 - $ARMS <<'PY'
import json, math, os, sys
work = os.environ["WORK"]
rows = {}
print(f"sessions per arm: {os.environ['SESSIONS']}")
print(f"{'arm':<18} {'scored':>7} {'mean':>8} {'sd':>8} {'hit rate':>8} {'watches':>8} {'ratings':>8}")
for arm in sys.argv[1:]:
    s = json.load(open(f"{work}/{arm}.json"))
    r = s["online"][0]
    n, total, squares = r["scored"], r["score_sum"], r["score_sum_squares"]
    mean = total / n
    sd = math.sqrt(max(0.0, (squares - total * total / n) / (n - 1)))
    t = s["tally"]
    rows[arm] = (n, mean, sd)
    print(f"{arm:<18} {n:>7} {mean:>8.3f} {sd:>8.3f} {r['hit_rate']:>8.3f} "
          f"{t['list_watches'] + t['organic_watches']:>8} {t['ratings']:>8}")
print("random: not measured (no random-list model is servable)")
for data in ("synth", "real"):
    a, b = rows.get(f"{data}-served"), rows.get(f"{data}-popularity")
    if not (a and b):
        continue
    delta = abs(a[1] - b[1])
    var = a[2] ** 2 + b[2] ** 2
    n95 = math.ceil(1.96 ** 2 * var / delta ** 2)
    n80 = math.ceil((1.96 + 0.8416) ** 2 * var / delta ** 2)
    print(f"{data}: served − popularity = {a[1] - b[1]:+.3f}; scored events per arm to separate "
          f"at 95 % confidence: {n95} (just significant), {n80} (80 % power)")
    c = rows.get(f"{data}-baseline")
    if c:
        half = 1.96 * math.sqrt((a[2] ** 2) / a[0] + (c[2] ** 2) / c[0])
        print(f"{data}: served − baseline = {a[1] - c[1]:+.3f} [{a[1] - c[1] - half:+.3f}, "
              f"{a[1] - c[1] + half:+.3f}] (95 %, two-sample; same users, seed and schedule)")
PY
