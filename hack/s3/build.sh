#!/usr/bin/env bash
# Installs the S3-compatible test server, moto (PyPI, `moto[s3,iam,sts]` + Flask), into a
# Python virtual environment in a cache outside the clone. moto's server verifies AWS
# Signature Version 4 and IAM policies once its first few unauthenticated calls are used up
# (hack/s3/server.py spends them creating the test users). Idempotent: a complete cache for
# the pinned versions is kept and the script returns at once.
#
#   MOVREK_CACHE  (default /var/cache/movrek)  cache root; the venv lands in $MOVREK_CACHE/s3/moto-<version>/venv
#   MOTO_VERSION  (default 5.2.5)              moto release
#   PYTHON        (default python3)            interpreter for the venv (3.9 or newer)
#   S3_BUILD_QUIET (unset)                     set: say nothing on stderr when the cache is complete
#
# Prints the venv directory as its last line. pip's cache is $MOVREK_CACHE/s3/pip, so an empty
# MOVREK_CACHE means a truly cold download (measured here: ~25 s, 140 MB).
set -euo pipefail
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
FLASK_SPEC="${FLASK_SPEC:-flask>=3,<4}"
FLASK_CORS_SPEC="${FLASK_CORS_SPEC:-flask-cors>=5,<7}"
PYTHON="${PYTHON:-python3}"
CACHE="${MOVREK_CACHE:-/var/cache/movrek}/s3"
DEST="$CACHE/moto-$MOTO_VERSION"
VENV="$DEST/venv"
# Written last: a run killed half-way leaves no marker, so the next run starts over.
MARKER="$DEST/.complete"
want="moto=$MOTO_VERSION $FLASK_SPEC $FLASK_CORS_SPEC python=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
complete() {
  [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$want" ] && [ -x "$VENV/bin/python" ]
}
up_to_date() {
  [ -n "${S3_BUILD_QUIET:-}" ] || echo "s3/build.sh: moto $MOTO_VERSION up to date in $VENV" >&2
  echo "$VENV"
  exit 0
}
complete && up_to_date
mkdir -p "$CACHE"
# One install at a time per cache: a second run waits here, then finds the venv in place.
exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
  echo "s3/build.sh: another build holds $CACHE/.build.lock; waiting for it" >&2
  flock 9
fi
complete && up_to_date
start=$SECONDS
rm -f "$MARKER"
rm -rf "$VENV"
mkdir -p "$DEST"
echo "s3/build.sh: installing moto $MOTO_VERSION into $VENV" >&2
"$PYTHON" -m venv "$VENV"
PIP_CACHE_DIR="$CACHE/pip" "$VENV/bin/pip" install -q --disable-pip-version-check \
  --no-input "moto[s3,iam,sts]==$MOTO_VERSION" "$FLASK_SPEC" "$FLASK_CORS_SPEC" >&2
"$VENV/bin/python" -c 'import moto.server, boto3' ||
  { echo "s3/build.sh: moto installed but does not import" >&2; exit 1; }
echo "$want" >"$MARKER"
echo "s3/build.sh: moto $MOTO_VERSION ($(du -sh "$VENV" | cut -f1)) in $((SECONDS - start))s" >&2
echo "$VENV"
