#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go module proxy into a cache outside the
# clone: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, helm.
# Idempotent: a binary already built for the pinned version is kept.
#
#   MOVREK_CACHE (default /var/cache/movrek)   cache root; binaries land in $MOVREK_CACHE/k8s/bin
#   K8S_VERSION  (default v1.35.4)             Kubernetes release to build
set -euo pipefail
K8S_VERSION="${K8S_VERSION:-v1.35.4}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE="${MOVREK_CACHE:-/var/cache/movrek}/k8s"
BIN="$CACHE/bin"
STAMP="$BIN/.versions"
WANT="k8s=$K8S_VERSION kwok=$KWOK_VERSION helm=$HELM_VERSION"
mkdir -p "$BIN"
all_built() {
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok helm; do
    [ -x "$BIN/$b" ] || return 1
  done
  [ -f "$CACHE/kwok-stages/pod/fast/pod-ready.yaml" ]
}
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/../lib.sh"
# The lock, the up-to-date check (exits here when nothing is to do) and the Go settings.
go_build_start cluster/build.sh "$CACHE" "$STAMP" "$WANT" all_built
start=$(date +%s)

# kube-apiserver & co: a throwaway module that requires k8s.io/kubernetes and replaces each
# staging module (which its go.mod maps to ./staging/...) with the published v0.X.Y release.
mod="$CACHE/build-$K8S_VERSION"
mkdir -p "$mod"
cd "$mod"
[ -f go.mod ] || go mod init movrek.dev/k8s-build >/dev/null 2>&1
go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
staging_version="v0.${K8S_VERSION#v1.}"
{
  echo "module movrek.dev/k8s-build"
  echo
  echo "go $(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" |
    awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} >go.mod
cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "go.etcd.io/etcd/server/v3"
)
GO
go get go.etcd.io/etcd/server/v3 >/dev/null 2>&1 || true
go mod tidy -e >/dev/null 2>&1 || true
ldflags="-s -w"
for v in gitVersion=$K8S_VERSION gitMajor=1 gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) gitTreeState=clean buildDate=1970-01-01T00:00:00Z; do
  ldflags="$ldflags -X k8s.io/component-base/version.$v -X k8s.io/client-go/pkg/version.$v"
done
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  echo "== go build $cmd $K8S_VERSION"
  go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
echo "== go build etcd"
go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3

# kwok and helm install as ordinary modules.
echo "== go install kwok $KWOK_VERSION"
GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
kwok_dir="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION"
rm -rf "$CACHE/kwok-stages" && cp -r "$kwok_dir/kustomize/stage" "$CACHE/kwok-stages" && chmod -R u+w "$CACHE/kwok-stages"
echo "== go install helm $HELM_VERSION"
GOBIN="$BIN" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(echo "$K8S_VERSION" | cut -d. -f2)" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
echo "$WANT" >"$STAMP"
echo "control-plane binaries built in $(( $(date +%s) - start ))s into $BIN"
