# shellcheck shell=bash
# Shared by hack/kafka/up, down and tool (sourced, not run). Locates the jars and tells whether a
# pid is a broker that `up` started for a given directory.

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# kafka_classpath: prints the classpath of the cached jars, resolving them first if needed.
kafka_classpath() {
  local libs
  libs="$(KAFKA_BUILD_QUIET=1 "$(dirname "${BASH_SOURCE[0]}")/build.sh")" || return 1
  printf '%s/*' "$libs"
}

# kafka_is_ours PID DIR: true when PID is alive (not a zombie) and its command line is the java
# process that `up DIR` started (main class kafka.Kafka and -Dmovrek.kafka.dir=DIR).
kafka_is_ours() {
  pid_has_args "$1" "-Dmovrek.kafka.dir=$2" kafka.Kafka
}

# kafka_java_tool_opts: JVM options for the short-lived command-line tools (fast start, small heap,
# warnings only, on stderr).
kafka_java_tool_opts() {
  printf '%s\n' -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true -Dlog4j.shutdownHookEnabled=false \
    "-Dlog4j2.configurationFile=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/log4j2-tools.properties"
}
