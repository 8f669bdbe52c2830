# shellcheck shell=bash
# Process helpers shared by the scripts under hack/ (sourced, not run).
#
# Two traps these avoid, both seen in CI:
# - Right after `cmd &`, $! is a forked copy of the shell until it execs (twice with nohup):
#   its command line is the parent script's for a moment. A start-up loop that asks "is the
#   pid still our server?" can hear "no" for a healthy server, and `wait` on it then blocks
#   forever. Start-up loops ask `child_exited` instead: our own child cannot be replaced by
#   another process before we reap it.
# - `tr ... </proc/PID/cmdline | grep -q ...` under `set -o pipefail` fails when grep stops
#   reading first and tr dies of SIGPIPE (a JVM's command line is longer than one pipe write).
#   The command line is read whole into a variable and matched in bash.

# pid_running PID: PID is a number, exists, and is not a zombie.
pid_running() {
  local state
  [[ "${1:-}" =~ ^[0-9]+$ ]] || return 1
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# child_exited PID: PID, a child of this shell, has exited (gone, or a zombie not reaped yet).
child_exited() {
  ! pid_running "$1"
}

# pid_has_args PID ARG...: PID is running and every ARG is exactly one of its arguments.
pid_has_args() {
  local pid="$1" argv arg
  shift
  pid_running "$pid" || return 1
  argv="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  argv=$'\n'"$argv"$'\n'
  for arg in "$@"; do
    [[ "$argv" == *$'\n'"$arg"$'\n'* ]] || return 1
  done
}

# pid_mentions PID TEXT: PID is running and TEXT occurs anywhere in its command line.
pid_mentions() {
  local argv
  pid_running "$1" || return 1
  argv="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)" || return 1
  [[ "$argv" == *"$2"* ]]
}

# go_build_start TOOL CACHE STAMP WANT [CHECK...]: the start every Go build script under hack/
# shares (hack/cluster/build.sh, hack/gateway/build.sh, hack/prometheus/build.sh).
# - One build at a time per cache: takes $CACHE/.build.lock on fd 9 for the rest of the script
#   (a second run, from another clone or CI beside a session, waits here and then finds the
#   binaries built).
# - Up to date: when STAMP holds exactly WANT and CHECK (a command, e.g. a function testing
#   that every binary is there; none: no check) succeeds, says so and exits the script with 0.
# - Otherwise finds Go (PATH, then /usr/local/go/bin) and exports the build settings they all
#   use: GOFLAGS=-mod=mod, GOTOOLCHAIN=local (never download another toolchain), CGO_ENABLED=0
#   (static binaries, no C toolchain needed), GOWORK=off (a module zip may ship a go.work, as
#   Prometheus's does; -mod=mod is refused in workspace mode).
go_build_start() {
  local tool="$1" cache="$2" stamp="$3" want="$4"
  shift 4
  mkdir -p "$cache"
  exec 9>"$cache/.build.lock"
  if ! flock -n 9; then
    echo "$tool: another build holds $cache/.build.lock; waiting for it"
    flock 9
  fi
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && { [ $# -eq 0 ] || "$@"; }; then
    echo "$tool: up to date in $(dirname "$stamp") ($want)"
    exit 0
  fi
  if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null || { echo "$tool: Go is required (go1.26)" >&2; exit 1; }
  export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
}

# go_module_dir MODULE@VERSION: downloads the module (Go module proxy) and prints its directory
# in the module cache (read-only; copy it to build with changes).
go_module_dir() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}
