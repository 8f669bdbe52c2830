# shellcheck shell=bash
# Shared by hack/s3/up and down (sourced, not run): tells whether a pid is the server that
# `up` started for a given directory.

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# s3_is_ours PID DIR: true when PID is alive (not a zombie) and runs this directory's
# server.py with `--dir=DIR`.
s3_is_ours() {
  pid_has_args "$1" "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/server.py" "--dir=$2"
}
