# shellcheck shell=bash
# Shared by hack/kafka/up, down and tool (sourced, not run). Locates the jars and tells whether a
# pid is a broker that `up` started for a given directory.

# kafka_classpath: prints the classpath of the cached jars, resolving them first if needed.
kafka_classpath() {
  local libs
  libs="$(KAFKA_BUILD_QUIET=1 "$(dirname "${BASH_SOURCE[0]}")/build.sh")" || return 1
  printf '%s/*' "$libs"
}

# kafka_is_ours PID DIR: true when PID is alive (not a zombie) and its command line is the java
# process that `up DIR` started (main class kafka.Kafka and -Dmovrek.kafka.dir=DIR).
kafka_is_ours() {
  local pid="$1" dir="$2" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [ "$state" != Z ] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qFx -- "-Dmovrek.kafka.dir=$dir" || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qFx -- kafka.Kafka
}

# child_exited PID: true when PID, a child of this shell, has exited (gone, or a zombie
# not reaped yet).
child_exited() {
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 0
  [ -z "$state" ] || [ "$state" = Z ]
}

# kafka_java_tool_opts: JVM options for the short-lived command-line tools (fast start, small heap,
# warnings only, on stderr).
kafka_java_tool_opts() {
  printf '%s\n' -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true -Dlog4j.shutdownHookEnabled=false \
    "-Dlog4j2.configurationFile=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/log4j2-tools.properties"
}
