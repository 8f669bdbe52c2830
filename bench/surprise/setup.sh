#!/usr/bin/env bash
# Creates (once) the Python venv of the Surprise peers under
# ${MOVREK_CACHE:-/var/cache/movrek}/venv-surprise and prints its python path.
# Shared with bench/http (Flask peer): one package list for both.
# scikit-surprise 1.1.5 ships a manylinux wheel for CPython 3.11 built against numpy 1.x,
# hence the numpy<2 pin.
set -euo pipefail
cache="${MOVREK_CACHE:-/var/cache/movrek}"
venv="$cache/venv-surprise"
py="$venv/bin/python"
if ! "$py" -c 'import surprise, flask, gunicorn' >/dev/null 2>&1; then
  mkdir -p "$cache"
  [ -x "$py" ] || python3 -m venv "$venv"
  "$py" -m pip install -q --disable-pip-version-check "numpy<2" scikit-surprise flask gunicorn >&2
fi
echo "$py"
