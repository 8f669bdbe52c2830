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
