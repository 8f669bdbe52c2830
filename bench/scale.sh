#!/usr/bin/env bash
# Scale runs of the model: 20k users x 5k movies x 1M ratings and 1M x 27k x 10M.
# Each run generates the synthetic set (data::synth), trains, writes and reloads the
# artifact, and measures in-process top-20 latency; /usr/bin/time -v adds the peak RSS.
# Usage: bench/scale.sh [small|large|all|load]   (default: all). Output: /var/tmp/movrek/scale-*.txt
# `load` only re-measures loading (and latency of) the large artifact a previous `large` run
# wrote, without generating or training again.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
out=/var/tmp/movrek
mkdir -p "$out"
cargo build --release -p movrek-inference --bench model
bin=$(ls -t target/release/deps/model-* | grep -v '\.d$' | head -1)

run() {
    local name=$1 users=$2 movies=$3 ratings=$4
    echo "== $name: $users users x $movies movies x $ratings ratings"
    MOVREK_BENCH_USERS=$users MOVREK_BENCH_MOVIES=$movies MOVREK_BENCH_RATINGS=$ratings \
        MOVREK_BENCH_DIR=$out /usr/bin/time -v "$bin" --bench >"$out/scale-$name.txt" 2>&1
    grep -E '^(size|generate|train|peak|holdout|artifact|load|top20|final)|Maximum resident|Elapsed' "$out/scale-$name.txt"
}

case $which in
small) run small 20000 5000 1000000 ;;
large) run large 1000000 27000 10000000 ;;
all)
    run small 20000 5000 1000000
    run large 1000000 27000 10000000
    ;;
load)
    artifact=$out/bench-1000000x27000x10000000.movrek
    [[ -f $artifact ]] || { echo "no $artifact: run '$0 large' first" >&2; exit 2; }
    echo "== load: $artifact"
    MOVREK_BENCH_ARTIFACT=$artifact /usr/bin/time -v "$bin" --bench >"$out/scale-load.txt" 2>&1
    grep -E '^(artifact|read|sha256|load|top20|final)|Maximum resident|Elapsed' "$out/scale-load.txt"
    ;;
*) echo "usage: $0 [small|large|all|load]" >&2; exit 2 ;;
esac
