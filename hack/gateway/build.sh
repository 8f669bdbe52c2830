#!/usr/bin/env bash
# Builds the e2e gateway: Traefik (a Gateway API implementation) from the Go module proxy, and
# copies the standard Gateway API CRDs from the sigs.k8s.io/gateway-api module, into a cache
# outside the clone. Idempotent: a binary already built for the pinned versions is kept.
#
#   MOVREK_CACHE (default /var/cache/movrek)   binary in $MOVREK_CACHE/gateway/bin/traefik,
#                                              CRDs in $MOVREK_CACHE/gateway/crds/
#   TRAEFIK_VERSION (default v3.7.13), GATEWAY_API_VERSION (default v1.6.1, what it requires)
#
# Traefik's go.mod cannot be built as published from the proxy alone, so the build works on a
# writable copy of the module and changes it as follows (each checked; a change that no longer
# applies stops the build with a message):
# - `github.com/traefik/traefik/dynamic/ext` is a nested module replaced by a directory that
#   the module zip leaves out: an empty extension point (two empty structs), written here.
# - Its forks github.com/containous/mux and github.com/containous/go-http-auth are not served:
#   the upstream gorilla/mux v1.8.1 and abbot/go-http-auth v0.4.0 are used instead. The
#   routing-path context key the mux fork exported becomes a local one, the v2 rule syntax's
#   matchers lose the fork's UseRoutingPath (v3 syntax, the default, is unaffected), and the
#   basicAuth and digestAuth middlewares refuse to be configured ("not built into this binary").
# - lego's DNS-01 providers need modules the proxy refuses (Akamai, Huawei, OCI, Sakura SDKs):
#   ACME with a DNS challenge reports "not built into this binary". HTTP-01/TLS-ALPN stay.
# None of this touches the Kubernetes Gateway provider, the router or the load balancer.
set -euo pipefail
TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.7.13}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.6.1}"
CACHE="${MOVREK_CACHE:-/var/cache/movrek}/gateway"
BIN="$CACHE/bin"
STAMP="$BIN/.versions"
WANT="traefik=$TRAEFIK_VERSION gateway-api=$GATEWAY_API_VERSION"
mkdir -p "$BIN"
built() { [ -x "$BIN/traefik" ] && [ -f "$CACHE/crds/gateway.networking.k8s.io_httproutes.yaml" ]; }
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/../lib.sh"
# The lock, the up-to-date check (exits here when nothing is to do) and the Go settings.
go_build_start gateway/build.sh "$CACHE" "$STAMP" "$WANT" built
start=$(date +%s)
die() { echo "gateway/build.sh: $*" >&2; exit 1; }

# --- Gateway API CRDs (standard channel) ------------------------------------------------------
gwapi="$(go_module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")"
[ -d "$gwapi/config/crd/standard" ] || die "no config/crd/standard in sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION"
rm -rf "$CACHE/crds" && mkdir -p "$CACHE/crds"
cp "$gwapi"/config/crd/standard/*.yaml "$CACHE/crds/"
chmod -R u+w "$CACHE/crds"

# --- Traefik ----------------------------------------------------------------------------------
mod="$(go_module_dir "github.com/traefik/traefik/v3@$TRAEFIK_VERSION")"
[ -f "$mod/go.mod" ] || die "could not download github.com/traefik/traefik/v3@$TRAEFIK_VERSION"
src="$CACHE/src-$TRAEFIK_VERSION"
rm -rf "$src" && cp -r "$mod" "$src" && chmod -R u+w "$src"
cd "$src"

# patch FILE SED-EXPR CHECK-REGEX: applies SED-EXPR, then requires CHECK-REGEX to match FILE.
patch() {
  sed -i -e "$2" "$1"
  grep -q -e "$3" "$1" || die "patching $1 failed (Traefik $TRAEFIK_VERSION changed?): $2"
}
mkdir -p pkg/config/dynamic/ext
printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' >pkg/config/dynamic/ext/go.mod
cat >pkg/config/dynamic/ext/ext.go <<'GO'
// Package ext is the dynamic-configuration extension point: empty in this build.
package ext

// HTTP extends dynamic.HTTP.
type HTTP struct{}

// Router extends dynamic.Router.
type Router struct{}
GO
go mod edit -dropreplace github.com/abbot/go-http-auth -dropreplace github.com/gorilla/mux \
  -replace github.com/abbot/go-http-auth=github.com/abbot/go-http-auth@v0.4.0 \
  -require github.com/gorilla/mux@v1.8.1
patch pkg/muxer/http/mux.go '/^[[:space:]]*"github.com\/gorilla\/mux"$/d; s/mux\.RoutingPathKey/routingPathKey/' 'routingPathKey'
printf '\n// routingPathKey holds the decoded routing path in a request context.\nvar routingPathKey = struct{ name string }{"traefik-routing-path"}\n' >>pkg/muxer/http/mux.go
patch pkg/muxer/http/matcher_v2.go 's/mux\.NewRouter()\.UseRoutingPath()\.NewRoute()/mux.NewRouter().NewRoute()/g' 'mux.NewRouter().NewRoute()'
patch pkg/middlewares/auth/basic_auth.go 's/goauth\.CheckSecret,/nil,/; /^func NewBasic(/a\	if true {\n\t\treturn nil, fmt.Errorf("basicAuth middleware %s: not built into this binary", name)\n\t}' 'basicAuth middleware %s: not built'
patch pkg/middlewares/auth/digest_auth.go 's/d\.auth\.RequireAuthStale(rw, req)/d.auth.RequireAuth(rw, req)/; /^func NewDigest(/a\	if true {\n\t\treturn nil, fmt.Errorf("digestAuth middleware %s: not built into this binary", name)\n\t}' 'digestAuth middleware %s: not built'
patch pkg/provider/acme/provider.go '/"github.com\/go-acme\/lego\/v5\/providers\/dns"/d; s|provider, err = dns\.NewDNSChallengeProviderByName(p\.DNSChallenge\.Provider)|err = fmt.Errorf("DNS challenge provider %q: not built into this binary", p.DNSChallenge.Provider)|' 'DNS challenge provider %q: not built'

echo "== go build traefik $TRAEFIK_VERSION"
go build -trimpath \
  -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
  -o "$BIN/traefik.new" ./cmd/traefik
mv "$BIN/traefik.new" "$BIN/traefik"
cd / && rm -rf "$src"
echo "$WANT" >"$STAMP"
echo "gateway binaries built in $(( $(date +%s) - start ))s into $BIN"
