#!/usr/bin/env bash
# movrek vs Surprise on the identical split, in one run.
#
#   bench/compare.sh [DATA_DIR] [--scale]
#
# DATA_DIR defaults to data/ml-latest-small (made by hack/movielens.sh); without it a
# synthetic set is generated with `movrek generate`. The Rust side
# (inference/examples/eval_compare.rs) loads the data, makes the seeded 80/20 split,
# writes it as train.csv/test.csv/split.json and evaluates; the Surprise peer
# (bench/surprise/knn_eval.py, KNNBasic k=40 min_k=1 cosine user-based) reads the same
# files. bench/surprise/compare.py prints both sides, differences, ratios and targets.
#
# --scale additionally times Surprise's fit (and movrek's) at 20k users x 5k movies x 1M
# ratings, when the machine has the memory for Surprise's dense user x user matrices.
#
# Outputs go to ${MOVREK_COMPARE_OUT:-/var/tmp/movrek/compare}.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export MOVREK_CACHE="${MOVREK_CACHE:-/var/cache/movrek}"
out="${MOVREK_COMPARE_OUT:-/var/tmp/movrek/compare}"
data=""
scale=0
for arg in "$@"; do
  case "$arg" in
    --scale) scale=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) data="$arg" ;;
  esac
done
data="${data:-data/ml-latest-small}"
mkdir -p "$out"
py=$("$repo/bench/surprise/setup.sh")
timev() { /usr/bin/time -v -o "$1" "${@:2}"; }

echo "== building (release)"
cargo build --release -q -p movrek-inference --example eval_compare --bin movrek
bin="$repo/target/release"

if [ ! -d "$data" ]; then
  data="$out/synthetic"
  echo "== no real data set found; generating a synthetic one in $data"
  "$bin/movrek" generate --users 700 --movies 4000 --ratings 100000 --seed 7 --out "$data"
fi

echo "== movrek on $data"
timev "$out/movrek.time" "$bin/examples/eval_compare" --data "$data" --split-out "$out/split" \
  --plots "$out/plots" --dump-predictions "$out/movrek_pred.csv" >"$out/movrek.json" 2>"$out/movrek.table"
cat "$out/movrek.table"
echo "== Surprise on the same split (its knn-basic ranking predicts every unrated movie: minutes)"
timev "$out/surprise.time" "$py" "$repo/bench/surprise/knn_eval.py" "$out/split" \
  --dump-predictions "$out/surprise_pred.csv" >"$out/surprise.json"
echo "== comparison"
status=0
"$py" "$repo/bench/surprise/compare.py" "$out" || status=$?

if [ "$scale" = 1 ]; then
  big="/var/tmp/movrek/scale-20k"
  echo "== scale: 20k users x 5k movies x 1M ratings"
  [ -f "$big/ratings.dat" ] || "$bin/movrek" generate --users 20000 --movies 5000 --ratings 1000000 --seed 11 --out "$big"
  timev "$out/scale_movrek.time" "$bin/examples/eval_compare" --data "$big" --split-out "$out/scale_split" \
    --max-ranking-users 500 --dump-predictions "$out/scale_movrek_pred.csv" \
    >"$out/scale_movrek.json" 2>"$out/scale_movrek.table"
  cat "$out/scale_movrek.table"
  grep -E "Maximum resident|Elapsed" "$out/scale_movrek.time" | sed 's/^/  movrek eval run: /'
  avail_gb=$(awk '/MemAvailable/ {printf "%d", $2/1024/1024}' /proc/meminfo)
  if [ "$avail_gb" -lt 18 ]; then
    echo "  Surprise at 20k users: SKIPPED — it needs ~16 GB for its dense 20k x 20k matrices and only ${avail_gb} GB is available"
  elif timeout 600 /usr/bin/time -v -o "$out/scale_surprise.time" "$py" "$repo/bench/surprise/knn_eval.py" \
      "$out/scale_split" --no-ranking --test-every 10 >"$out/scale_surprise.json"; then
    "$py" - "$out" <<'PY'
import csv, json, math, re, sys
out = sys.argv[1]
m = json.load(open(f"{out}/scale_movrek.json")); s = json.load(open(f"{out}/scale_surprise.json"))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{out}/scale_surprise.time").read()).group(1)) / 2**20
# movrek's knn-basic on the same every-N-th test pairs Surprise predicted
rows = list(csv.DictReader(open(f"{out}/scale_movrek_pred.csv")))[:: s["test_every"]]
rmse = math.sqrt(sum((float(r["estimate"]) - float(r["actual"])) ** 2 for r in rows) / len(rows))
t = m["timings"]
print(f"  Surprise KNNBasic fit {s['fit_seconds']:.1f} s, peak RSS {rss:.1f} GiB; RMSE on every {s['test_every']}th test pair {s['rating']['rmse']:.5f}")
print(f"  movrek served train {t['served_train_seconds']:.2f} s; knn-basic RMSE on the same pairs {rmse:.5f} (diff {rmse - s['rating']['rmse']:+.2e})")
print(f"  train time ratio Surprise fit / movrek served train = {s['fit_seconds'] / t['served_train_seconds']:.0f}x")
PY
  else
    echo "  Surprise at 20k users: SKIPPED — did not finish within 10 minutes (or failed; see $out/scale_surprise.time)"
  fi
fi
exit "$status"
