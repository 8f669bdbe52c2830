#!/usr/bin/env bash
# The retraining gate against the simulated users' hidden taste (exposure bias).
#
# On the end-to-end scenario's world (`movrek generate --users 300 --movies 200 --ratings
# 8000`), for each EASE^R mode (every rating; liked ratings only): train v1, serve it on
# 127.0.0.1, let `movrek simulate` users (hidden taste: the generator's taste.csv) use it
# for SESSIONS sessions, then `movrek retrain` from that event log with the gate opened
# (`--ndcg-tolerance 1`, so the candidate is published whatever the gate says) and print
# the gate's figures. bench/exposure/truth.py then scores v1 and the candidate by the hidden
# taste: per user, the mean expected rating of the first 10 movies of the list that the
# user has not rated or watched (the data set plus the window), paired over users.
#
#   bench/exposure.sh            Environment: SESSIONS [1500] SEED [1] WORK
#                                [/var/tmp/movrek/exposure] MOVREK [target/release/movrek]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SESSIONS=${SESSIONS:-1500}
SEED=${SEED:-1}
WORK=${WORK:-/var/tmp/movrek/exposure}
MOVREK=${MOVREK:-$ROOT/target/release/movrek}
[ -x "$MOVREK" ] || { echo "build first: cargo build --release -p movrek-inference" >&2; exit 1; }
rm -rf "$WORK" && mkdir -p "$WORK"

# shellcheck source=lib/serve.sh
. "$ROOT/bench/lib/serve.sh"
trap stop_server EXIT

DATA=$WORK/data
"$MOVREK" generate --users 300 --movies 200 --ratings 8000 --out "$DATA" >/dev/null 2>&1
echo '{"ease_min_rating": 0, "ease_min_rating_candidates": []}' >"$WORK/every.json"
echo '{"ease_min_rating": 4, "ease_min_rating_candidates": []}' >"$WORK/liked.json"
for mode in every liked; do
    dir=$WORK/$mode
    mkdir -p "$dir"
    "$MOVREK" train --data "$DATA" --out "$dir/v1.movrek" --version v1 \
        --params "$WORK/$mode.json" >/dev/null 2>&1
    "$MOVREK" publish --model "$dir/v1.movrek" --to "$dir/store" --release movies >/dev/null 2>&1
    start_server "$dir/v1.movrek" "$dir/serve.log"
    "$MOVREK" simulate --target "$URL" --data "$DATA" --count "$SESSIONS" --rate 300 \
        --concurrency 8 --seed "$SEED" --unknown-share 0 --malformed-share 0 --burst-share 0 \
        --last-minute-only --quiet --sink "file:$dir/events.log" \
        --summary-json "$dir/simulate.json" 2>"$dir/simulate.err"
    stop_server
    "$MOVREK" retrain --store "$dir/store" --release movies --stable-version v1 \
        --events "$dir/events.log" --data "$DATA" --handoff none --ndcg-tolerance 1 \
        >"$dir/retrain.out" 2>"$dir/retrain.err"
    candidate=$(find "$dir/store/movies" -mindepth 1 -maxdepth 1 -name 'r*' -printf '%f\n')
    echo "== $mode: $(grep -o 'RMSE .*' "$dir/retrain.err" | tail -1)"
    python3 "$ROOT/bench/exposure/truth.py" "$MOVREK" "$DATA" "$dir/events.log" \
        "v1=$dir/store/movies/v1/model.movrek" "$candidate=$dir/store/movies/$candidate/model.movrek"
done
echo "== every-rating v1 against liked v1, by the hidden taste (the window of the liked run)"
python3 "$ROOT/bench/exposure/truth.py" "$MOVREK" "$DATA" "$WORK/liked/events.log" \
    "every=$WORK/every/store/movies/v1/model.movrek" "liked=$WORK/liked/store/movies/v1/model.movrek"
