#!/usr/bin/env bash
# Builds the end-to-end tests' Prometheus, with Kubernetes service discovery, from the Go module
# proxy into a cache outside the clone. Idempotent: a binary already built for the pinned
# version is kept. (Debian's prometheus 2.42, which hack/deps.sh installs for the cargo-level
# analysis tests, is built without `kubernetes_sd_configs`.)
#
#   MOVREK_CACHE       (default /var/cache/movrek)  binary in $MOVREK_CACHE/prometheus/bin/prometheus
#   PROMETHEUS_VERSION (default v0.316.0)           Go module version of github.com/prometheus/prometheus
#                                                   (v0.3MM.P is Prometheus 3.MM.P)
#
# What is left out, to keep the build small (each by a switch Prometheus documents):
# - every service discovery but Kubernetes (and file and HTTP, which are always in): the build
#   tags `remove_all_sd` and `enable_kubernetes_sd` (plugins/plugin_*.go, Prometheus ≥ 3.10).
#   A `*_sd_configs` of another kind is then refused when the configuration loads.
# - the web UI's assets: without the `builtinassets` tag the UI pages are not embedded; the HTTP
#   API (all the tests use) is unaffected.
# The module is built from a writable copy of its directory (`go mod download -json`), as
# hack/gateway/build.sh does, so replace/exclude directives in its go.mod cannot stop it.
set -euo pipefail
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
TAGS="remove_all_sd,enable_kubernetes_sd"
CACHE="${MOVREK_CACHE:-/var/cache/movrek}/prometheus"
BIN="$CACHE/bin"
STAMP="$BIN/.versions"
WANT="prometheus=$PROMETHEUS_VERSION tags=$TAGS"
mkdir -p "$BIN"
built() { [ -x "$BIN/prometheus" ]; }
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/../lib.sh"
# The lock, the up-to-date check (exits here when nothing is to do) and the Go settings.
go_build_start prometheus/build.sh "$CACHE" "$STAMP" "$WANT" built
start=$(date +%s)
die() { echo "prometheus/build.sh: $*" >&2; exit 1; }

# v0.316.0 → 3.16.0 (the release the binary reports in --version and build_info).
minor="${PROMETHEUS_VERSION#v0.}"
minor="${minor%%.*}"
patch="${PROMETHEUS_VERSION##*.}"
[[ "$minor" =~ ^[0-9]{3}$ ]] || die "PROMETHEUS_VERSION $PROMETHEUS_VERSION is not of the form v0.3MM.P"
release="$((10#$minor / 100)).$((10#$minor % 100)).$patch"

mod="$(go_module_dir "github.com/prometheus/prometheus@$PROMETHEUS_VERSION")"
[ -f "$mod/go.mod" ] || die "could not download github.com/prometheus/prometheus@$PROMETHEUS_VERSION"
grep -q 'remove_all_sd' "$mod/plugins/plugin_kubernetes.go" 2>/dev/null ||
  die "$PROMETHEUS_VERSION has no remove_all_sd/enable_kubernetes_sd build tags (Prometheus < 3.10?)"
src="$CACHE/src-$PROMETHEUS_VERSION"
rm -rf "$src" && cp -r "$mod" "$src" && chmod -R u+w "$src"
cd "$src"
echo "== go build prometheus $release ($PROMETHEUS_VERSION, tags $TAGS)"
ldflags="-s -w"
for v in Version=$release Revision=$PROMETHEUS_VERSION Branch=module-proxy BuildUser=movrek BuildDate=19700101-00:00:00; do
  ldflags="$ldflags -X github.com/prometheus/common/version.$v"
done
go build -trimpath -tags "$TAGS" -ldflags "$ldflags" -o "$BIN/prometheus.new" ./cmd/prometheus
"$BIN/prometheus.new" --version >/dev/null || die "the built prometheus does not run"
mv "$BIN/prometheus.new" "$BIN/prometheus"
cd / && rm -rf "$src"
echo "$WANT" >"$STAMP"
echo "prometheus $release built in $(( $(date +%s) - start ))s into $BIN ($(du -h "$BIN/prometheus" | cut -f1))"
