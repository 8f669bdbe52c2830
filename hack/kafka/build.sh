#!/usr/bin/env bash
# Resolves the jars of a single-node Apache Kafka broker (KRaft) and its command-line tools with
# Maven (hack/kafka/pom.xml) into a cache outside the clone. Idempotent: a complete cache for the
# pinned versions is kept and the script returns at once.
#
#   MOVREK_CACHE  (default /var/cache/movrek)  cache root; jars land in $MOVREK_CACHE/kafka/<version>/libs
#   KAFKA_VERSION (default 4.4.0)              org.apache.kafka release (4.0.0 … 4.4.0 resolve here)
#   LOG4J_VERSION (default 2.24.3)             Log4j 2 binding the broker logs through
#   KAFKA_BUILD_QUIET (unset)                  set: say nothing on stderr when the cache is complete
#
# Prints the libs directory as its last line. Maven's own repository is $MOVREK_CACHE/kafka/m2, so
# an empty MOVREK_CACHE means a truly cold download; network goes only to the Maven repositories
# that `mvn` is configured with on this machine.
set -euo pipefail
KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
LOG4J_VERSION="${LOG4J_VERSION:-2.24.3}"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${MOVREK_CACHE:-/var/cache/movrek}/kafka"
DEST="$CACHE/$KAFKA_VERSION"
LIBS="$DEST/libs"
# Written last: a run killed half-way leaves no marker, so the next run starts over. It records
# the versions and the POM's hash, so editing the POM re-resolves.
MARKER="$DEST/.complete"
want="kafka=$KAFKA_VERSION log4j=$LOG4J_VERSION pom=$(sha256sum "$HERE/pom.xml" | cut -c1-16)"
complete() {
  [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$want" ] &&
    [ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] && [ -f "$LIBS/kafka-tools-$KAFKA_VERSION.jar" ]
}
up_to_date() {
  [ -n "${KAFKA_BUILD_QUIET:-}" ] || echo "kafka/build.sh: Kafka $KAFKA_VERSION jars up to date in $LIBS" >&2
  echo "$LIBS"
  exit 0
}
# The marker is written only after the jars are in place, so it can be read without the lock.
complete && up_to_date
mkdir -p "$CACHE"
# One resolution at a time per cache: a second run waits here, then finds the jars in place.
exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
  echo "kafka/build.sh: another build holds $CACHE/.build.lock; waiting for it" >&2
  flock 9
fi
# Another run may have completed the cache while this one waited.
complete && up_to_date
command -v java >/dev/null || { echo "kafka/build.sh: java (17 or newer) is required" >&2; exit 1; }
command -v mvn >/dev/null || { echo "kafka/build.sh: mvn (Apache Maven) is required" >&2; exit 1; }
start=$SECONDS
rm -f "$MARKER"
tmp="$DEST/libs.partial"
rm -rf "$tmp"
mkdir -p "$tmp"
echo "kafka/build.sh: resolving Kafka $KAFKA_VERSION with mvn into $LIBS" >&2
# The POM has packaging "pom": nothing is compiled and no target/ directory is written.
mvn -B -q -f "$HERE/pom.xml" \
  -Dmaven.repo.local="$CACHE/m2" \
  -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
  "$DEP_PLUGIN:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="$tmp" |
  sed 's/\x1b\[[0-9;]*m//g' >&2 # Maven 3.8 prints colour resets even with -B -q
[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || {
  echo "kafka/build.sh: mvn finished but $tmp/kafka_2.13-$KAFKA_VERSION.jar is missing" >&2
  exit 1
}
rm -rf "$LIBS"
mv "$tmp" "$LIBS"
echo "$want" >"$MARKER"
echo "kafka/build.sh: $(find "$LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $((SECONDS - start))s" >&2
echo "$LIBS"
