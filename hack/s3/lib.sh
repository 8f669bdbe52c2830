# shellcheck shell=bash
# Shared by hack/s3/up and down (sourced, not run): tells whether a pid is the server that
# `up` started for a given directory.

# s3_is_ours PID DIR: true when PID is alive (not a zombie) and its command line is
# hack/s3/server.py with `--dir DIR`.
s3_is_ours() {
  local pid="$1" dir="$2" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [ "$state" != Z ] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qE -- '/hack/s3/server\.py$' || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qFx -- "--dir=$dir"
}
