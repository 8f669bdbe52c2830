#!/usr/bin/env bash
# Wall time and peak RSS of one `movrek retrain` (release build) on MovieLens
# ml-latest-small plus one simulated day of events, against the moto S3 server (hack/s3)
# with a loopback webhook receiver. One rating in SHARE of ml-latest-small (seeded) is held
# back: v1 is trained on the rest and published as a user would (`movrek train`, `movrek
# publish`); the held-back ratings arrive during one day as rating events, each after a
# recommendation request and 0-12 per-minute watch lines of the movie (the DESIGN.md log
# format; half stars rounded to 1-5), written to a file. Then `movrek retrain --events FILE
# --data BASE` runs once under `/usr/bin/time -f '%e %M'`. The training of v1 is timed the
# same way beside it, as the floor: a retraining is a training plus the merge, two
# scorings, the gates and the uploads.
#
# Usage: bench/retrain.sh [DATA_DIR]     DATA_DIR [data/ml-latest-small; hack/movielens.sh
#                                        builds it when absent], or a `movrek generate` set:
#   movrek generate --users 1000000 --movies 27000 --ratings 10000000 --seed 11 --out DIR
# Environment: SHARE [7]: one rating in SHARE arrives during the day;
#   WORK [/var/tmp/movrek/bench-retrain].
# Everything listens on 127.0.0.1; the S3 server and the receiver are stopped by pid.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${1:-$ROOT/data/ml-latest-small}
SHARE=${SHARE:-7}
WORK=${WORK:-/var/tmp/movrek/bench-retrain}
mkdir -p "$WORK"
S3_DIR=$WORK/s3-$$
HOOK_PID=""
cleanup() {
  [ -n "$HOOK_PID" ] && kill "$HOOK_PID" 2>/dev/null || true
  "$ROOT/hack/s3/down" "$S3_DIR" >/dev/null 2>&1 || true
  rm -rf "$S3_DIR"
}
trap cleanup EXIT

if [[ ! -s $DATA/ratings.csv && ! -s $DATA/ratings.dat ]]; then
  "$ROOT/hack/movielens.sh" "$DATA" >&2
fi
cargo build --release --locked -p movrek-inference --bin movrek --manifest-path "$ROOT/Cargo.toml" >&2
MOVREK=${CARGO_TARGET_DIR:-$ROOT/target}/release/movrek

BASE=$WORK/base
LOG=$WORK/day.log
python3 "$ROOT/bench/retrain_day.py" "$DATA" "$SHARE" "$BASE" "$LOG"
if [[ -s $BASE/ratings.csv ]]; then
  kept=$(($(wc -l < "$BASE/ratings.csv") - 1))  # less its header
else
  kept=$(wc -l < "$BASE/ratings.dat")
fi
echo "day: $(wc -l < "$LOG") event lines, $(grep -c '/rate/' "$LOG") of them ratings; v1 data: $kept ratings"

# The webhook receiver: answers 200 to every POST, keeps the last body, stops after 10 min.
HOOK_PORT_FILE=$WORK/hook-port-$$
python3 -c '
import http.server, sys, threading
port_file, body_file = sys.argv[1], sys.argv[2]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        open(body_file, "wb").write(body)
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
threading.Timer(600, server.shutdown).start()
open(port_file, "w").write(str(server.server_address[1]))
server.serve_forever()
' "$HOOK_PORT_FILE" "$WORK/hook-body.json" &
HOOK_PID=$!
for _ in $(seq 1 100); do [[ -s $HOOK_PORT_FILE ]] && break; sleep 0.1; done
HOOK=http://127.0.0.1:$(cat "$HOOK_PORT_FILE")/hook
rm -f "$HOOK_PORT_FILE" "$WORK/hook-body.json"

"$ROOT/hack/s3/up" "$S3_DIR" >/dev/null
set -a; . "$S3_DIR/env"; set +a
export AWS_ENDPOINT_URL=$MOVREK_S3_ENDPOINT AWS_REGION=$MOVREK_S3_REGION \
  AWS_ACCESS_KEY_ID=$MOVREK_S3_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$MOVREK_S3_SECRET_ACCESS_KEY
PREFIX=s3://$MOVREK_S3_BUCKET/bench-retrain-$$

export MOVREK_LOG=warn
/usr/bin/time -f '%e %M' -o "$WORK/train-time.txt" \
  "$MOVREK" train --data "$BASE" --out "$WORK/v1.movrek" --version v1 >/dev/null
"$MOVREK" publish --model "$WORK/v1.movrek" --to "$PREFIX" --release movies >/dev/null

status=0
/usr/bin/time -f '%e %M' -o "$WORK/retrain-time.txt" \
  "$MOVREK" retrain --store "$PREFIX" --release movies --stable-version v1 \
  --events "$LOG" --data "$BASE" --webhook-url "$HOOK" >"$WORK/retrain.out" 2>"$WORK/retrain.err" ||
  status=$?
# The time file's last line holds the figures (a failing command adds a line before them).
read -r train_secs train_kib < <(tail -n1 "$WORK/train-time.txt")
read -r secs kib < <(tail -n1 "$WORK/retrain-time.txt")
echo "retrain: exit $status: $(tail -n1 "$WORK/retrain.err")"
echo "retrain: $secs s wall, peak RSS $((kib / 1024)) MiB"
echo "train of v1 (the floor): $train_secs s wall, peak RSS $((train_kib / 1024)) MiB"
awk -v r="$secs" -v t="$train_secs" 'BEGIN { if (t > 0) printf "ratio retrain/train: %.2f\n", r / t }'
python3 - "$WORK/hook-body.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["movrek"]
f = m.get("figures") or {}
g, e = f.get("gates") or {}, f.get("events") or {}
nan = float("nan")
print(f"notification: outcome {m['outcome']}, version {m.get('version')}; events "
      f"{e.get('lines')} lines, {e.get('new_ratings')} new ratings, {e.get('test_ratings')} "
      f"held out; RMSE {g.get('candidate_rmse', nan):.4f} vs stable {g.get('stable_rmse', nan):.4f}, "
      f"NDCG@10 {g.get('candidate_ndcg', nan):.4f} vs {g.get('stable_ndcg', nan):.4f}")
version = m.get("version")
if m["outcome"] == "published" and version:
    open(sys.argv[1] + ".version", "w").write(version)
PY
if [[ -s $WORK/hook-body.json.version ]]; then
  version=$(cat "$WORK/hook-body.json.version")
  grep '^provenance: ' "$WORK/retrain.out" || true
  "$MOVREK" report "$PREFIX/movies/$version/fairness.json" --svg "$WORK/svg" > "$WORK/report.txt"
  echo "movrek report: $WORK/report.txt, charts in $WORK/svg"
  rm -f "$WORK/hook-body.json.version"
fi
exit "$status"
