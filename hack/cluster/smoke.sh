#!/usr/bin/env bash
# Smoke test of the local control plane and the Helm chart, end to end, with a timeline:
#   build check → up → lint/render/promtool (rule check + alert unit tests) → helm install (CRD from the chart) → pods Ready on
#   the kwok node → RBAC checks → the real operator binary run with the chart's ServiceAccount
#   token deploys a release, starts a canary and rolls it back on abort → Argo CD health Lua on
#   the live object → down.
#
#   hack/cluster/smoke.sh
#
#   MOVREK_OPERATOR_BIN  operator binary to run (default: newest movrek-operator under
#                        $CARGO_TARGET_DIR, /var/tmp/movrek-op-target or target/, debug or release).
#                        Without one, the operator steps are reported SKIPPED and the run fails
#                        unless MOVREK_SMOKE_ALLOW_NO_OPERATOR=1.
# Exit status 0 only when every check passed. Everything listens on 127.0.0.1 only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/hack/cluster"
BIN="${MOVREK_CACHE:-/var/cache/movrek}/k8s/bin"
WORK="$(mktemp -d /var/tmp/movrek-smoke.XXXXXX)"
DIR="$WORK/cluster"
NS=movrek-system
T0=$EPOCHREALTIME
PIDS=()

step() { awk -v a="$T0" -v b="$EPOCHREALTIME" -v m="$*" 'BEGIN { printf "[smoke %6.1fs] %s\n", b - a, m }'; }
fail() { step "FAIL: $*"; exit 1; }

cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    # Our own children: gone or a zombie means exited (wait reaps it below).
    for _ in $(seq 50); do
      case "$(ps -o stat= -p "$pid" 2>/dev/null)" in "" | Z*) break ;; esac
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -d "$DIR" ]; then
    "$HERE/down" "$DIR" 2>"$WORK/down.log" || true
    grep KILL "$WORK/down.log" || true
  fi
  if [ "$rc" = 0 ]; then
    rm -rf "$WORK"
    step "PASS (wall time above)"
  else
    step "failed (rc $rc); logs kept in $WORK"
  fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_until() { # seconds description command...
  local limit="$1" what="$2"; shift 2
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out after ${limit}s: $what"
    sleep 0.5
  done
}

step "build check"
bash "$HERE/build.sh" >"$WORK/build.log" 2>&1 || fail "hack/cluster/build.sh failed (see $WORK/build.log)"
export PATH="$BIN:$PATH"

step "up"
eval "$("$HERE/up" "$DIR" 2>"$WORK/up.log")" || fail "hack/cluster/up failed (see $WORK/up.log)"
step "up done: $(tail -n 1 "$WORK/up.log" | sed 's/^\[up *//; s/s\].*/ s/') to ready"

# Nothing the control plane started listens beyond loopback.
while read -r pid name; do
  if ss -Htlnp | grep "pid=$pid," | awk '{print $4}' | grep -vqE '^(127\.0\.0\.1|\[::1\]):'; then
    fail "$name (pid $pid) listens on a non-loopback address"
  fi
done <"$DIR/pids"
step "all control-plane listeners are on 127.0.0.1"

CHART="$ROOT/charts/movrek-operator"
ALL='serviceMonitor.enabled=true,podMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true,replicaCount=2,rbac.secretNamespaces={default},networkPolicy.enabled=true,networkPolicy.apiServer.cidrs={127.0.0.1/32},networkPolicy.webhooks.to[0].ipBlock.cidr=0.0.0.0/0,egress.allowedPrometheusHosts={prometheus.monitoring:9090,*.svc.cluster.local:9090},egress.allowedWebhookHosts={hooks.slack.com:443},evaluator.enabled=true,kafka.brokers=kafka.kafka:9092'
helm lint --strict "$CHART" >"$WORK/lint.log" 2>&1 || fail "helm lint (defaults): $(cat "$WORK/lint.log")"
helm lint --strict "$CHART" --set "$ALL" >>"$WORK/lint.log" 2>&1 || fail "helm lint (all features): $(cat "$WORK/lint.log")"
helm template smoke "$CHART" --set "$ALL" >"$WORK/all.yaml" || fail "helm template with every feature"
helm template smoke "$CHART" --set prometheusRule.enabled=true --show-only templates/prometheusrule.yaml |
  python3 -c 'import sys, yaml; print(yaml.safe_dump({"groups": yaml.safe_load(sys.stdin)["spec"]["groups"]}))' \
  >"$WORK/rules.yaml"
if command -v promtool >/dev/null; then
  promtool check rules "$WORK/rules.yaml" >"$WORK/promtool.log" 2>&1 || fail "promtool: $(cat "$WORK/promtool.log")"
  cp "$HERE/alert-tests.yaml" "$WORK/alert-tests.yaml"
  promtool test rules "$WORK/alert-tests.yaml" >"$WORK/alert-tests.log" 2>&1 ||
    fail "alert unit tests: $(cat "$WORK/alert-tests.log")"
  step "helm lint clean; every optional object renders; $(grep -o '[0-9]* rules found' "$WORK/promtool.log"), alert unit tests pass (promtool)"
else
  step "helm lint clean; every optional object renders (promtool not installed: rules not checked)"
fi

# The optional NetworkPolicy is valid to the API server, and the allow-lists reach the args.
helm template smoke "$CHART" --set "$ALL" --show-only templates/networkpolicy.yaml >"$WORK/netpol.yaml"
kubectl apply --dry-run=server -n default -f "$WORK/netpol.yaml" >"$WORK/netpol.log" 2>&1 ||
  fail "NetworkPolicy rejected by the API server: $(cat "$WORK/netpol.log")"
grep -q -- '--allowed-prometheus-hosts=prometheus.monitoring:9090,\*.svc.cluster.local:9090' "$WORK/all.yaml" ||
  fail "egress.allowedPrometheusHosts did not reach the operator's args"
step "NetworkPolicy (metrics ingress; DNS, API server, Prometheus, webhook egress) accepted by the API server (dry run)"

# The online evaluator's Deployment and Service are valid to the API server, with the brokers
# and topics in its environment (its PodMonitor needs the prometheus-operator CRDs: not here).
helm template smoke "$CHART" --set evaluator.enabled=true,kafka.brokers=kafka.kafka:9092 \
  --show-only templates/evaluator.yaml >"$WORK/evaluator.yaml"
kubectl apply --dry-run=server -n default -f "$WORK/evaluator.yaml" >"$WORK/evaluator.log" 2>&1 ||
  fail "evaluator objects rejected by the API server: $(cat "$WORK/evaluator.log")"
grep -q 'value: "kafka.kafka:9092"' "$WORK/evaluator.yaml" || fail "kafka.brokers did not reach the evaluator"
step "online evaluator Deployment (Recreate) and Service accepted by the API server (dry run)"

# The retrain CronJob in each handoff mode. gitops: the git flags and image, the credentials
# mounted read-only, a Role that can only get the release; direct keeps get and patch; gitops
# without a repository is refused at render time.
RETRAIN='retrain.enabled=true,retrain.release=movies,retrain.store=s3://models/prod,kafka.brokers=kafka.kafka:9092'
GITOPS="$RETRAIN,retrain.handoff=gitops,retrain.gitops.url=https://git.example/deploy.git,retrain.gitops.path=apps/movies/release.yaml,retrain.gitops.credentialsSecret=deploy-key"
helm lint --strict "$CHART" --set "$GITOPS" >>"$WORK/lint.log" 2>&1 || fail "helm lint (retrain gitops): $(tail -n 5 "$WORK/lint.log")"
helm template smoke "$CHART" --set "$GITOPS" --show-only templates/retrain-cronjob.yaml \
  --show-only templates/retrain-rbac.yaml >"$WORK/retrain-gitops.yaml" || fail "helm template (retrain gitops)"
kubectl apply --dry-run=server -n default -f "$WORK/retrain-gitops.yaml" >"$WORK/retrain-gitops.log" 2>&1 ||
  fail "retrain (gitops) objects rejected by the API server: $(cat "$WORK/retrain-gitops.log")"
for want in '- --handoff=gitops' '"--git-path=apps/movies/release.yaml"' \
  'registry.example/movrek-retrain-git:' 'secretName: deploy-key' 'readOnly: true' 'verbs: \["get"\]$'; do
  grep -Eq -- "$want" "$WORK/retrain-gitops.yaml" || fail "retrain gitops render lacks /$want/"
done
! grep -q '"patch"' "$WORK/retrain-gitops.yaml" || fail "retrain gitops Role can patch the release"
helm template smoke "$CHART" --set "$RETRAIN,retrain.handoff=direct" --show-only templates/retrain-rbac.yaml |
  grep -q 'verbs: \["get", "patch"\]' || fail "retrain direct Role lost patch"
if helm template smoke "$CHART" --set "$RETRAIN,retrain.handoff=gitops" >/dev/null 2>&1; then
  fail "retrain gitops without a repository rendered"
fi
step "retrain CronJob: gitops (git image, read-only credentials, get-only Role) and direct (get, patch) accepted by the API server (dry run)"

step "helm install (CRD from the chart's crds/, 2 replicas, Secrets readable in default only)"
kubectl create namespace "$NS" >/dev/null
helm install movrek "$CHART" -n "$NS" --set replicaCount=2 --set 'rbac.secretNamespaces={default}' \
  --wait --timeout 90s >"$WORK/helm.log" 2>&1 || fail "helm install: $(tail -n 5 "$WORK/helm.log")"
kubectl wait --for=condition=Established crd/recommenderreleases.movrek.dev --timeout=30s >/dev/null
ready=$(kubectl -n "$NS" get deployment movrek-movrek-operator -o jsonpath='{.status.readyReplicas}')
[ "$ready" = 2 ] || fail "operator Deployment has $ready ready replicas, want 2"
node=$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=movrek-operator -o jsonpath='{.items[*].spec.nodeName}')
step "installed: 2/2 operator pods Ready (kwok) on: $node"

# RBAC as the operator's ServiceAccount sees it.
SA=system:serviceaccount:$NS:movrek-movrek-operator
can() { kubectl auth can-i --as="$SA" "$@" 2>/dev/null; }
for want in "watch recommenderreleases.movrek.dev" "patch recommenderreleases.movrek.dev --subresource=status" \
            "create deployments -n default" "patch services -n default" "create ingresses.networking.k8s.io -n default" \
            "create events.events.k8s.io -n default" "get secrets -n default" "update leases/movrek-operator -n $NS"; do
  [ "$(can $want)" = yes ] || fail "the operator cannot: $want"
done
for deny in "delete deployments -n default" "get secrets -n kube-system" "list secrets -n default" \
            "update leases/other -n $NS" "create pods -n default" "get configmaps -n default"; do
  [ "$(can $deny)" = no ] || fail "the operator should not be allowed to: $deny"
done
step "RBAC: 8 needed permissions granted, 6 others denied"

# The real operator with nothing but the chart's RBAC.
OP="${MOVREK_OPERATOR_BIN:-}"
if [ -z "$OP" ]; then
  OP=$(ls -t "${CARGO_TARGET_DIR:-/nonexistent}"/{debug,release}/movrek-operator \
    /var/tmp/movrek-op-target/{debug,release}/movrek-operator \
    "$ROOT"/target/{debug,release}/movrek-operator 2>/dev/null | head -n 1 || true)
fi
if [ -z "$OP" ] || [ ! -x "$OP" ]; then
  [ "${MOVREK_SMOKE_ALLOW_NO_OPERATOR:-}" = 1 ] || fail "no operator binary (set MOVREK_OPERATOR_BIN or build movrek-operator)"
  step "SKIPPED: operator run (no binary)"
else
  cp "$OP" "$WORK/movrek-operator"
  token=$(kubectl -n "$NS" create token movrek-movrek-operator --duration=1h)
  api=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  cat >"$WORK/sa.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$api", certificate-authority: "$DIR/pki/ca.crt"}}]
users: [{name: operator, user: {token: "$token"}}]
contexts: [{name: local, context: {cluster: local, user: operator}}]
current-context: local
EOF
  # A webhook receiver on loopback for the rollback notification.
  cat >"$WORK/hook.py" <<'EOF'
import http.server
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        print("POST", body.decode(errors="replace"), flush=True)
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args): pass
server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
print("PORT", server.server_address[1], flush=True)
server.serve_forever()
EOF
  python3 "$WORK/hook.py" >"$WORK/hook.log" 2>&1 &
  PIDS+=($!)
  wait_until 10 "webhook receiver" grep -q PORT "$WORK/hook.log"
  hook_port=$(awk '/^PORT/ {print $2}' "$WORK/hook.log")
  kubectl -n default create secret generic movrek-slack --from-literal=url="http://127.0.0.1:$hook_port/hook" >/dev/null

  # start_operator NAME: one replica as the chart runs it (4 s Lease to keep the handover short).
  start_operator() {
    KUBECONFIG="$WORK/sa.kubeconfig" POD_NAMESPACE="$NS" POD_NAME="$1" RUST_LOG=info \
      "$WORK/movrek-operator" run --http "127.0.0.1:$(free_port)" --lease-seconds 4 >"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
  }
  holder() { [ "$(kubectl -n "$NS" get lease movrek-operator -o jsonpath='{.spec.holderIdentity}')" = "$1" ]; }
  start_operator smoke-operator
  LEADER_PID=${PIDS[-1]}
  wait_until 30 "operator holds the Lease" holder smoke-operator
  step "operator (SA token only) holds Lease $NS/movrek-operator"

  # The example release, with Prometheus pointed at a closed loopback port.
  sed -e 's|http://prometheus.monitoring:9090|http://127.0.0.1:9|' "$ROOT/examples/recommenderrelease.yaml" \
    >"$WORK/release.yaml"
  kubectl apply -f "$WORK/release.yaml" >/dev/null
  phase() { [ "$(kubectl get rr movies -o jsonpath='{.status.phase}')" = "$1" ]; }
  wait_until 60 "release Stable" phase Stable
  kubectl wait --for=condition=Ready rr/movies --timeout=30s >/dev/null || fail "kubectl wait Ready"
  for obj in deployment/movies-stable service/movies service/movies-stable service/movies-canary \
             ingress/movies ingress/movies-canary; do
    kubectl get "$obj" >/dev/null 2>&1 || fail "$obj was not created"
  done
  stable_ready=$(kubectl get deployment movies-stable -o jsonpath='{.status.readyReplicas}')
  step "release Stable: movies-stable $stable_ready/2 Ready, 3 Services, 2 Ingresses; kubectl get rr:"
  kubectl get rr movies | sed 's/^/    /'

  kubectl patch rr movies --type merge -p '{"spec":{"model":{"version":"v8","uri":"http://models.internal/movies/v8.movrek"},"canary":{"soakDuration":"1s","interval":"2s"}}}' >/dev/null
  wait_until 60 "canary analysing" phase Analyzing
  weight=$(kubectl get rr movies -o jsonpath='{.status.canaryWeight}')
  step "v8 canary up, weight $weight%, analysing (Prometheus unreachable: inconclusive, never promoted)"
  kubectl annotate rr movies movrek.dev/action=abort >/dev/null
  wait_until 60 "rolled back" phase RolledBack
  wait_until 30 "rollback notification" grep -q RolledBack "$WORK/hook.log"
  canary_replicas=$(kubectl get deployment movies-canary -o jsonpath='{.spec.replicas}')
  [ "$canary_replicas" = 0 ] || fail "canary has $canary_replicas replicas after rollback"
  reasons=$(kubectl get events.events.k8s.io -n default -o jsonpath='{range .items[?(@.regarding.kind=="RecommenderRelease")]}{.reason}{" "}{end}')
  step "aborted → RolledBack, canary at 0 replicas, webhook received; Events: $reasons"
  if grep -qi forbidden "$WORK/smoke-operator.log"; then fail "the operator hit a Forbidden error: $(grep -i -m1 forbidden "$WORK/smoke-operator.log")"; fi

  # Two replicas: the second waits while the leader renews, and takes over when it stops.
  start_operator smoke-operator-2
  sleep 6
  holder smoke-operator || fail "the Lease moved while its holder was renewing it"
  kill "$LEADER_PID" # SIGTERM, as in a rolling update: the leader releases the Lease
  stopped=$EPOCHREALTIME
  wait_until 30 "second replica takes the Lease" holder smoke-operator-2
  handover=$(awk -v a="$stopped" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  # Released, not expired: the hand-over comes before the 4 s Lease could have run out.
  awk -v h="$handover" 'BEGIN { exit !(h < 4) }' || fail "hand-over took ${handover} s: the Lease was not released"
  [ "$(kubectl -n "$NS" get lease movrek-operator -o jsonpath='{.spec.leaseTransitions}')" -ge 1 ] ||
    fail "no lease transition recorded"
  kubectl annotate --overwrite rr movies movrek.dev/action=retry >/dev/null
  wait_until 60 "the new leader reconciles (retry → canary again)" phase Analyzing
  step "2 replicas: follower waited 6 s; leader got SIGTERM and released the Lease → follower leads after ${handover} s and runs the retry"
  if grep -qi forbidden "$WORK/smoke-operator-2.log"; then fail "replica 2 hit a Forbidden error"; fi

  if command -v lua5.1 >/dev/null; then
    kubectl get rr movies -o json | python3 -c '
import json, sys
def lua(v):
    if isinstance(v, dict): return "{" + ",".join("[%s]=%s" % (json.dumps(k), lua(x)) for k, x in v.items()) + "}"
    if isinstance(v, list): return "{" + ",".join(lua(x) for x in v) + "}"
    if isinstance(v, bool): return "true" if v else "false"
    if v is None: return "nil"
    return json.dumps(v)
print("obj = " + lua(json.load(sys.stdin)))
print("local hs = dofile(%s); print(hs.status .. \": \" .. hs.message)" % json.dumps(sys.argv[1]))
' "$ROOT/deploy/argocd/health.lua" >"$WORK/live.lua"
    health=$(lua5.1 "$WORK/live.lua")
    case "$health" in Progressing:*) ;; *) fail "Argo CD health of a release being analysed: $health" ;; esac
    step "Argo CD health.lua on the live object: ${health:0:120}"
  fi
fi

step "helm uninstall"
helm uninstall movrek -n "$NS" --wait --timeout 60s >/dev/null
step "down"
