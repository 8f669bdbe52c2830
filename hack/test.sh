#!/usr/bin/env bash
# Runs every movrek test. Installs what the tests need (idempotent; caches live outside
# the clone under ${MOVREK_CACHE:-/var/cache/movrek}). CI calls this script unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOVREK_CACHE="${MOVREK_CACHE:-/var/cache/movrek}"
mkdir -p "$MOVREK_CACHE"

./hack/deps.sh
echo "== real MovieLens data (data/ml-latest-small)"
./hack/movielens.sh
export MOVREK_REQUIRE_REAL_DATA=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build (binaries the integration tests start)"
cargo build --workspace --bins --locked
echo "== cargo test"
cargo test --workspace --locked
